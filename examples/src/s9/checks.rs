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

/// Whether an item's key has its entity's format (`BUYER#BUYER001`, `#METADATA#buyer`;
/// lines `SALE#SALE001`, `LINE#001`).
fn key_format_ok(entity: Entity, item: &Item) -> bool {
    let digits = |t: &str, prefix: &str| {
        (t.strip_prefix(prefix))
            .is_some_and(|d| d.len() >= 3 && d.bytes().all(|b| b.is_ascii_digit()))
    };
    let (pk, sk) = (
        text(item, "PK").unwrap_or(""),
        text(item, "SK").unwrap_or(""),
    );
    let p = entity.prefix();
    digits(pk, &format!("{p}#{p}"))
        && match entity {
            Entity::SaleLines => digits(sk, "LINE#"),
            _ => sk == format!("#METADATA#{}", p.to_lowercase()),
        }
}

/// The checks of `mapping.toml` (required, numbers, enums), the key format, payment
/// terms, the foreign keys to its parents and the totals.
fn rules(e: Entity) -> ItemRules {
    let r = (super::transform::MAPPING.rules(e.name())).expect("every entity is in mapping.toml");
    let r = r
        .rule("enums", Severity::Error, |i| {
            let t = text(i, "PaymentTerms")?;
            let days = t.strip_suffix("_DAYS").map(str::parse::<u32>);
            days.is_none_or(|d| d.is_err())
                .then(|| format!("PaymentTerms {t} is not N_DAYS"))
        })
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
    let with_parents = e.parents().into_iter().fold(r, |r, to| {
        let (p, sk) = (
            to.prefix(),
            format!("#METADATA#{}", to.prefix().to_lowercase()),
        );
        let attr = format!("{}{}Id", &p[..1], p[1..].to_lowercase());
        r.references(&attr, to.name(), move |id: &str| format!("{p}#{id}|{sk}"))
    });
    match e {
        Entity::Sales | Entity::SaleLines => with_parents.rule("totals", Severity::Warning, totals),
        _ => with_parents,
    }
}

/// Total = Subtotal - Discount + Tax, to the cent.
fn totals(i: &Item) -> Option<String> {
    let n = |a| number(i, a);
    let (t, st, d, x) = (n("Total")?, n("Subtotal")?, n("Discount")?, n("Tax")?);
    ((t - (st - d + x)).abs() > 0.01)
        .then(|| format!("Total {t} != Subtotal {st} - Discount {d} + Tax {x}"))
}
