//! S9 rows -> the target DynamoDB design: keys, PascalCase attributes, code maps, GSIs,
//! ISO-8601 `Z` timestamps, money as numbers, split addresses, nested certifications.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use clap::ValueEnum;
use etl_core::{Fate, Transform};
use etl_sink_dynamodb::json_items::{ItemTransform, Row, map_code, need, reject};
use etl_sink_dynamodb::spec::MappingSpec;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The entities, their items' attributes with the S9 columns copied into them, the code
/// tables and the checks ([`MappingSpec`], from `mapping.toml`).
pub static MAPPING: LazyLock<MappingSpec> = LazyLock::new(|| {
    toml::from_str(include_str!("mapping.toml")).expect("s9/mapping.toml is a valid mapping")
});

/// The entities of the migration, in load order (`mapping.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// compradores -> `BUYER#...`.
    Buyers,
    /// produtores (+ certificacoes) -> `PRODUCER#...`.
    Producers,
    /// vendas -> `SALE#... / #METADATA#sale`.
    Sales,
    /// linhas_venda -> `SALE#... / LINE#...` (with `--entity sales`).
    #[value(skip)]
    SaleLines,
}

impl Entity {
    /// Every entity.
    pub const ALL: [Entity; 4] = [
        Entity::Buyers,
        Entity::Producers,
        Entity::Sales,
        Entity::SaleLines,
    ];

    /// Name used in files and reports.
    pub fn name(self) -> &'static str {
        ["buyers", "producers", "sales", "sale_lines"][self as usize]
    }

    /// A value of its entry in `mapping.toml`.
    fn info(self, what: &str) -> &'static Value {
        let e = MAPPING
            .entity(self.name())
            .expect("every entity is in mapping.toml");
        &e.extra[what]
    }

    /// The S9 table.
    pub fn table(self) -> &'static str {
        self.info("table").as_str().unwrap_or_default()
    }

    /// The S9 key column.
    pub fn key(self) -> &'static str {
        self.info("key").as_str().unwrap_or_default()
    }

    /// `EntityType` of its items.
    pub fn entity_type(self) -> &'static str {
        self.info("type").as_str().unwrap_or_default()
    }

    /// The prefix of its items' keys (`BUYER`: `BUYER#BUYER001`).
    pub fn prefix(self) -> &'static str {
        self.info("prefix").as_str().unwrap_or_default()
    }

    /// The entities its items reference (foreign keys).
    pub fn parents(self) -> Vec<Entity> {
        let names = self.info("parents");
        (Entity::ALL.into_iter())
            .filter(|p| {
                names
                    .as_array()
                    .is_some_and(|n| n.contains(&json!(p.name())))
            })
            .collect()
    }

    /// `code` mapped by the code table `table` of `mapping.toml`, else a reject of `column`.
    fn map(table: &str, code: &str, column: &str, what: &str) -> Result<&'static str, Fate> {
        map_code(Self::codes(table), code, column, what)
    }

    fn codes(name: &str) -> &'static [(&'static str, &'static str)] {
        static CODES: LazyLock<HashMap<&str, Vec<(&str, &str)>>> = LazyLock::new(|| {
            let codes = MAPPING.codes.keys().map(|k| (k.as_str(), MAPPING.codes(k)));
            codes
                .map(|(k, v)| (k, v.expect("valid code tables")))
                .collect()
        });
        &CODES[name]
    }
}

/// Payment terms in days -> `30_DAYS`; non-positive terms are unknown.
pub fn payment_terms(days: i64) -> Option<String> {
    (days > 0).then(|| format!("{days}_DAYS"))
}

/// `CNPJ` for 14 digits, `CPF` for 11.
pub fn document_type(doc: &str) -> Option<&'static str> {
    match doc.chars().filter(char::is_ascii_digit).count() {
        14 => Some("CNPJ"),
        11 => Some("CPF"),
        _ => None,
    }
}

/// `Av. Paulista, 1000, 10º andar` -> Street, Number, Complement.
pub fn split_address(address: &str) -> (String, Option<String>, Option<String>) {
    let mut parts = address.splitn(3, ',').map(str::trim);
    let street = parts.next().unwrap_or("").to_owned();
    let number = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    let complement = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
    (street, number, complement)
}

/// `S{prefix}{id:03}`: `SALE001`, `BUYER1234`.
pub fn code(prefix: &str, id: i64) -> String {
    format!("{prefix}{id:03}")
}

/// The Arrow schema of an entity's items (`data/transformed/<entity>.parquet`).
pub fn target_schema(entity: Entity) -> SchemaRef {
    (MAPPING.schema(entity.name(), &super::keys()))
        .expect("the attributes in mapping.toml are valid")
}

/// The `(attribute, column)` fields of the map attributes `name` of `mapping.toml`.
fn fields(name: &str) -> impl Iterator<Item = (&'static str, &'static str)> {
    static FIELDS: LazyLock<HashMap<&str, Vec<(&str, &str)>>> = LazyLock::new(|| {
        let f = MAPPING
            .fields
            .keys()
            .map(|k| (k.as_str(), MAPPING.fields(k)));
        f.map(|(k, v)| (k, v.expect("valid map fields"))).collect()
    });
    FIELDS[name].iter().copied()
}

// ----- the transform ----------------------------------------------------------------------

/// Lookups a transform needs from other entities' extracted rows.
#[derive(Debug, Default, Clone)]
pub struct Lookups {
    /// id_comprador -> (nome, cnpj).
    pub buyers: HashMap<i64, (String, Option<String>)>,
    /// id_produtor -> (nome, cnpj).
    pub producers: HashMap<i64, (String, Option<String>)>,
    /// id_produtor -> certifications (as target objects, in id order).
    pub certifications: HashMap<i64, Vec<Value>>,
}

impl Lookups {
    /// Add the rows of an extracted batch of `entity` (buyers, producers) or of
    /// `certificacoes` (`entity = None`).
    pub fn add(&mut self, entity: Option<Entity>, batch: &RecordBatch) {
        for r in 0..batch.num_rows() {
            let row = Row::new(batch, r);
            let Some(id) = row.i(entity.map_or("id_produtor", Entity::key)) else {
                continue;
            };
            let party = || (row.s("nome").unwrap_or_default(), row.s("cnpj"));
            match entity {
                Some(Entity::Buyers) => _ = self.buyers.insert(id, party()),
                Some(Entity::Producers) => _ = self.producers.insert(id, party()),
                Some(_) => {}
                None => {
                    let mut c = Map::new();
                    row.copy_into(&mut c, fields("Cert"));
                    let certs = self.certifications.entry(id).or_default();
                    certs.push(Value::Object(c));
                }
            }
        }
    }
}

/// `PK` `<PREFIX>#<code>`, `SK` `#METADATA#<prefix>` and the id attribute of a buyer or
/// producer item; GSI1 is the `<PREFIX>S` partition, sorted by `<PREFIX>#<Name>`.
fn party_keys(m: &mut Map<String, Value>, prefix: &str, id_attr: &str, id: i64) {
    let code = code(prefix, id);
    let name = m.get("Name").and_then(Value::as_str).unwrap_or_default();
    let gsi1sk = format!("{prefix}#{name}");
    m.insert("PK".into(), json!(format!("{prefix}#{code}")));
    let sk = format!("#METADATA#{}", prefix.to_lowercase());
    m.insert("SK".into(), json!(sk));
    m.insert(id_attr.into(), json!(code));
    m.insert("GSI1PK".into(), json!(format!("{prefix}S")));
    m.insert("GSI1SK".into(), json!(gsi1sk));
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<impl Into<Value>>) {
    if let Some(v) = v {
        m.insert(k.to_owned(), v.into());
    }
}

/// `PaymentTerms` from `prazo_pagamento` (days).
fn terms(row: &Row<'_>, m: &mut Map<String, Value>) -> Result<(), Fate> {
    if let Some(days) = row.i("prazo_pagamento") {
        let t = payment_terms(days).ok_or_else(|| {
            let why = format!("payment term {days} is not a positive number of days");
            reject("prazo_pagamento", "unknown_code", why)
        })?;
        m.insert("PaymentTerms".into(), json!(t));
    }
    Ok(())
}

/// The transform of one entity: S9 rows in, target items out; unknown codes are rejects.
#[derive(Debug, Clone)]
pub struct S9Transform {
    entity: Entity,
    lookups: Arc<Lookups>,
    invoice_url: String,
    schema: SchemaRef,
    copies: Vec<(String, String)>,
}

impl S9Transform {
    /// The transform of `entity`. `invoice_url` is the `InvoiceFileUrl` template with
    /// `{year}`, `{month}` (of the invoice date) and `{sale_id}`.
    pub fn new(entity: Entity, lookups: Arc<Lookups>, invoice_url: impl Into<String>) -> Self {
        let attrs = MAPPING
            .attributes(entity.name())
            .expect("valid mapping.toml");
        S9Transform {
            entity,
            lookups,
            invoice_url: invoice_url.into(),
            schema: target_schema(entity),
            copies: (attrs.into_iter())
                .filter_map(|a| Some((a.name, a.column?)))
                .collect(),
        }
    }

    /// What buyers and producers share: the document, the address, the status.
    fn party(&self, row: &Row<'_>, m: &mut Map<String, Value>) -> Result<(), Fate> {
        if let Some(doc) = row.s("cnpj") {
            let t = document_type(&doc).ok_or_else(|| {
                let why = format!("document {doc:?} is neither a CNPJ (14 digits) nor a CPF (11)");
                reject("cnpj", "bad_document", why)
            })?;
            m.insert("DocumentType".into(), json!(t));
        }
        let mut addr = Map::new();
        if let Some(a) = row.s("endereco") {
            let (street, number, complement) = split_address(&a);
            addr.insert("Street".into(), json!(street));
            put(&mut addr, "Number", number);
            put(&mut addr, "Complement", complement);
        }
        row.copy_into(&mut addr, fields("Address"));
        m.insert("Address".into(), Value::Object(addr));
        let code = row.s("status").unwrap_or_default();
        let status = Entity::map("entity_status", &code, "status", "status")?;
        m.insert("Status".into(), json!(status));
        Ok(())
    }

    /// As a pipeline's transform ([`ItemTransform`]).
    pub fn into_transform(self) -> impl Transform {
        let schema = self.schema.clone();
        ItemTransform::new("s9_to_dynamodb", schema, move |row| self.item(row))
    }

    /// The item of one S9 row, or its fate.
    pub fn item(&self, row: &Row<'_>) -> Result<Map<String, Value>, Fate> {
        let key = self.entity.key();
        let id = row
            .i(key)
            .ok_or_else(|| reject(key, "missing_key", format!("{key} is null")))?;
        let mut m = Map::new();
        row.copy_into(
            &mut m,
            self.copies.iter().map(|(a, c)| (a.as_str(), c.as_str())),
        );
        m.insert("EntityType".into(), json!(self.entity.entity_type()));
        match self.entity {
            Entity::Buyers => {
                party_keys(&mut m, "BUYER", "BuyerId", id);
                self.party(row, &mut m)?;
                if let Some(a) = m.get("Address").cloned() {
                    m.insert("BillingAddress".into(), a);
                }
                terms(row, &mut m)?;
            }
            Entity::Producers => {
                party_keys(&mut m, "PRODUCER", "ProducerId", id);
                self.party(row, &mut m)?;
                if let Some(c) = row.s("categorias_produtos") {
                    let cats = c.split(',').map(str::trim).filter(|s| !s.is_empty());
                    m.insert("ProductCategories".into(), cats.collect());
                }
                let mut bank = Map::new();
                row.copy_into(&mut bank, fields("Bank"));
                if let Some(t) = row.s("tipo_conta") {
                    let mapped = Entity::map("account_type", &t, "tipo_conta", "account type")?;
                    bank.insert("AccountType".into(), json!(mapped));
                }
                if !bank.is_empty() {
                    m.insert("BankAccount".into(), Value::Object(bank));
                }
                let certs = self.lookups.certifications.get(&id);
                m.insert(
                    "Certifications".into(),
                    json!(certs.cloned().unwrap_or_default()),
                );
            }
            Entity::Sales => {
                // GSI1 of sales is by buyer (set below).
                party_keys(&mut m, "SALE", "SaleId", id);
                let sid = code("SALE", id);
                let buyer = need(row.i("id_comprador"), "id_comprador")?;
                let producer = need(row.i("id_produtor"), "id_produtor")?;
                let (bid, pid) = (code("BUYER", buyer), code("PRODUCER", producer));
                m.insert("BuyerId".into(), json!(bid));
                if let Some((name, doc)) = self.lookups.buyers.get(&buyer) {
                    m.insert("BuyerName".into(), json!(name));
                    put(&mut m, "BuyerDocument", doc.clone());
                }
                m.insert("ProducerId".into(), json!(pid));
                if let Some((name, doc)) = self.lookups.producers.get(&producer) {
                    m.insert("ProducerName".into(), json!(name));
                    put(&mut m, "ProducerDocument", doc.clone());
                }
                let sale_date = need(row.ts("data_venda"), "data_venda")?;
                m.insert("SaleDate".into(), json!(sale_date));
                let code_s = row.s("status").unwrap_or_default();
                let status = Entity::map("sale_status", &code_s, "status", "sale status")?;
                m.insert("Status".into(), json!(status));
                terms(row, &mut m)?;
                if row.s("numero_nota").is_some() {
                    let when = row.ts("data_nota").unwrap_or_else(|| sale_date.clone());
                    let url = (self.invoice_url.replace("{year}", &when[..4]))
                        .replace("{month}", &when[5..7])
                        .replace("{sale_id}", &sid);
                    m.insert("InvoiceFileUrl".into(), json!(url));
                }
                let gsi = [
                    ("BUYER", bid),
                    ("PRODUCER", pid),
                    ("STATUS", status.to_owned()),
                ];
                for (i, (what, value)) in gsi.into_iter().enumerate() {
                    m.insert(format!("GSI{}PK", i + 1), json!(format!("{what}#{value}")));
                    m.insert(
                        format!("GSI{}SK", i + 1),
                        json!(format!("SALE#{sale_date}")),
                    );
                }
            }
            Entity::SaleLines => {
                let sale = need(row.i("id_venda"), "id_venda")?;
                let number = need(row.i("numero_linha"), "numero_linha")?;
                let sid = code("SALE", sale);
                m.insert("PK".into(), json!(format!("SALE#{sid}")));
                m.insert("SK".into(), json!(format!("LINE#{number:03}")));
                m.insert("SaleId".into(), json!(sid));
                m.insert("LineNumber".into(), json!(number));
            }
        }
        Ok(m)
    }
}
