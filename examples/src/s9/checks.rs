//! The rules the transformed items must satisfy before the load
//! ([`etl_sink_dynamodb::check`] runs them; `validation_report.json` is its report).

use etl_sink_dynamodb::Item;
use etl_sink_dynamodb::check::{ItemRules, Severity, Validation, key_text, number, text};

use super::transform::Entity;

/// The key of an item as `PK|SK`.
pub fn item_key(item: &Item) -> String {
    key_text(&super::keys(), item)
}

/// The validation of every entity (check them in [`Entity::ALL`] order: parents first).
pub fn validation() -> Validation {
    Validation::new(super::keys(), Entity::ALL.map(rules).into())
}

fn key_format_ok(entity: Entity, item: &Item) -> bool {
    let digits = |t: &str, prefix: &str| {
        (t.strip_prefix(prefix))
            .is_some_and(|d| d.len() >= 3 && d.bytes().all(|b| b.is_ascii_digit()))
    };
    let (pk, sk) = (
        text(item, "PK").unwrap_or(""),
        text(item, "SK").unwrap_or(""),
    );
    match entity {
        Entity::Buyers => digits(pk, "BUYER#BUYER") && sk == "#METADATA#buyer",
        Entity::Producers => digits(pk, "PRODUCER#PRODUCER") && sk == "#METADATA#producer",
        Entity::Sales => digits(pk, "SALE#SALE") && sk == "#METADATA#sale",
        Entity::SaleLines => digits(pk, "SALE#SALE") && digits(sk, "LINE#"),
    }
}

fn rules(e: Entity) -> ItemRules {
    const BASE: [&str; 3] = ["PK", "SK", "EntityType"];
    const PARTY: [&str; 4] = ["Name", "Document", "Status", "CreatedAt"];
    const MONEY: [&str; 6] = [
        "Quantity",
        "UnitPrice",
        "Subtotal",
        "Discount",
        "Tax",
        "Total",
    ];
    let r = ItemRules::new(e.name()).required(&BASE);
    let r = match e {
        Entity::Buyers => r
            .required(&["BuyerId"])
            .required(&PARTY)
            .numbers(&["CreditLimit"]),
        Entity::Producers => r.required(&["ProducerId"]).required(&PARTY),
        Entity::Sales => r
            .required(&[
                "SaleId",
                "BuyerId",
                "ProducerId",
                "SaleDate",
                "Status",
                "Total",
            ])
            .required(&["Currency", "CreatedAt"])
            .numbers(&MONEY),
        Entity::SaleLines => r
            .required(&["SaleId", "LineNumber", "ProductCode", "Quantity", "Total"])
            .numbers(&MONEY),
    };
    let r = match e {
        Entity::SaleLines => r,
        Entity::Sales => r.one_of(
            "Status",
            &[
                "DRAFT",
                "CONFIRMED",
                "INVOICED",
                "SHIPPED",
                "DELIVERED",
                "CANCELLED",
            ],
        ),
        _ => r.one_of("Status", &["ACTIVE", "INACTIVE", "BLOCKED", "SUSPENDED"]),
    };
    let r = r
        .rule("enums", Severity::Error, |i| {
            let t = text(i, "PaymentTerms")?;
            let days = t.strip_suffix("_DAYS").map(str::parse::<u32>);
            days.is_none_or(|d| d.is_err())
                .then(|| format!("PaymentTerms {t} is not N_DAYS"))
        })
        .one_of("DocumentType", &["CNPJ", "CPF"])
        .rule("key_format", Severity::Error, move |i| {
            let why = || {
                format!(
                    "key {} does not follow the {} key format",
                    item_key(i),
                    e.entity_type()
                )
            };
            (!key_format_ok(e, i)).then(why)
        });
    let fk = |to: Entity, prefix: &'static str| {
        let sk = format!("#METADATA#{}", to.entity_type().to_lowercase());
        move |id: &str| format!("{prefix}{id}|{sk}")
    };
    match e {
        Entity::Buyers | Entity::Producers => r,
        Entity::Sales => r
            .references("BuyerId", "buyers", fk(Entity::Buyers, "BUYER#"))
            .references(
                "ProducerId",
                "producers",
                fk(Entity::Producers, "PRODUCER#"),
            )
            .rule("totals", Severity::Warning, totals),
        Entity::SaleLines => r
            .references("SaleId", "sales", fk(Entity::Sales, "SALE#"))
            .rule("totals", Severity::Warning, totals),
    }
}

/// Total = Subtotal - Discount + Tax, to the cent.
fn totals(i: &Item) -> Option<String> {
    let n = |a| number(i, a);
    let (t, st, d, x) = (n("Total")?, n("Subtotal")?, n("Discount")?, n("Tax")?);
    ((t - (st - d + x)).abs() > 0.01)
        .then(|| format!("Total {t} != Subtotal {st} - Discount {d} + Tax {x}"))
}
