//! S9 rows -> the target DynamoDB design: keys, PascalCase attributes, code maps, GSIs,
//! ISO-8601 `Z` timestamps, money as numbers, split addresses, nested certifications.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use etl_core::{Batch, Fate, Transform};
use etl_sink_dynamodb::json_items::{Attr, Row, item_schema, map_rows};
use serde_json::{Map, Value, json};

/// The entities of the migration, in load order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// compradores -> `BUYER#...`.
    Buyers,
    /// produtores (+ certificacoes) -> `PRODUCER#...`.
    Producers,
    /// vendas -> `SALE#... / #METADATA#sale`.
    Sales,
    /// linhas_venda -> `SALE#... / LINE#...`.
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
        match self {
            Entity::Buyers => "buyers",
            Entity::Producers => "producers",
            Entity::Sales => "sales",
            Entity::SaleLines => "sale_lines",
        }
    }

    /// The S9 table.
    pub fn table(self) -> &'static str {
        match self {
            Entity::Buyers => "compradores",
            Entity::Producers => "produtores",
            Entity::Sales => "vendas",
            Entity::SaleLines => "linhas_venda",
        }
    }

    /// The S9 key column.
    pub fn key(self) -> &'static str {
        match self {
            Entity::Buyers => "id_comprador",
            Entity::Producers => "id_produtor",
            Entity::Sales => "id_venda",
            Entity::SaleLines => "id_linha",
        }
    }

    /// `EntityType` of its items.
    pub fn entity_type(self) -> &'static str {
        match self {
            Entity::Buyers => "Buyer",
            Entity::Producers => "Producer",
            Entity::Sales => "Sale",
            Entity::SaleLines => "SaleLine",
        }
    }
}

/// `RASCUNHO` -> `DRAFT`, ...; `None` for an unknown code.
pub fn sale_status(code: &str) -> Option<&'static str> {
    Some(match code.trim() {
        "RASCUNHO" => "DRAFT",
        "CONFIRMADO" => "CONFIRMED",
        "FATURADO" => "INVOICED",
        "ENVIADO" => "SHIPPED",
        "ENTREGUE" => "DELIVERED",
        "CANCELADO" => "CANCELLED",
        _ => return None,
    })
}

/// `A/I/B/S` -> `ACTIVE/INACTIVE/BLOCKED/SUSPENDED`.
pub fn entity_status(code: &str) -> Option<&'static str> {
    Some(match code.trim() {
        "A" => "ACTIVE",
        "I" => "INACTIVE",
        "B" => "BLOCKED",
        "S" => "SUSPENDED",
        _ => return None,
    })
}

/// `CC/CP` -> `CHECKING/SAVINGS`.
pub fn account_type(code: &str) -> Option<&'static str> {
    Some(match code.trim() {
        "CC" => "CHECKING",
        "CP" => "SAVINGS",
        _ => return None,
    })
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

// ----- the target schemas -------------------------------------------------------------

const ADDRESS: &[&str] = &[
    "Street",
    "Number",
    "Complement",
    "Neighborhood",
    "City",
    "State",
    "PostalCode",
    "Country",
];
const BANK: &[&str] = &["Bank", "BankName", "Agency", "Account", "AccountType"];
const CERT: &[&str] = &["Type", "Number", "Issuer", "ValidUntil"];

const MONEY: Attr = Attr::Dec(18, 2);
const QTY: Attr = Attr::Dec(18, 3);

/// The Arrow schema of an entity's items (`data/transformed/<entity>.parquet`).
pub fn target_schema(entity: Entity) -> SchemaRef {
    use Attr::*;
    let schema_of = |attrs: &[(&str, Attr)]| item_schema(&super::keys(), attrs);
    match entity {
        Entity::Buyers => schema_of(&[
            ("PK", S),
            ("SK", S),
            ("EntityType", S),
            ("BuyerId", S),
            ("Name", S),
            ("TradeName", S),
            ("Document", S),
            ("DocumentType", S),
            ("Email", S),
            ("Phone", S),
            ("Mobile", S),
            ("Address", Map(ADDRESS)),
            ("BillingAddress", Map(ADDRESS)),
            ("Status", S),
            ("CreditLimit", MONEY),
            ("PaymentTerms", S),
            ("ContactPerson", S),
            ("ContactEmail", S),
            ("ContactPhone", S),
            ("TaxId", S),
            ("StateRegistration", S),
            ("Notes", S),
            ("CreatedAt", S),
            ("CreatedBy", S),
            ("UpdatedAt", S),
            ("UpdatedBy", S),
            ("GSI1PK", S),
            ("GSI1SK", S),
        ]),
        Entity::Producers => schema_of(&[
            ("PK", S),
            ("SK", S),
            ("EntityType", S),
            ("ProducerId", S),
            ("Name", S),
            ("TradeName", S),
            ("Document", S),
            ("DocumentType", S),
            ("Email", S),
            ("Phone", S),
            ("Mobile", S),
            ("Address", Map(ADDRESS)),
            ("Status", S),
            ("ProductCategories", StrList),
            ("ContactPerson", S),
            ("ContactEmail", S),
            ("ContactPhone", S),
            ("TaxId", S),
            ("StateRegistration", S),
            ("BankAccount", Map(BANK)),
            ("Certifications", MapList(CERT)),
            ("Notes", S),
            ("CreatedAt", S),
            ("CreatedBy", S),
            ("UpdatedAt", S),
            ("UpdatedBy", S),
            ("GSI1PK", S),
            ("GSI1SK", S),
        ]),
        Entity::Sales => schema_of(&[
            ("PK", S),
            ("SK", S),
            ("EntityType", S),
            ("SaleId", S),
            ("BuyerId", S),
            ("BuyerName", S),
            ("BuyerDocument", S),
            ("ProducerId", S),
            ("ProducerName", S),
            ("ProducerDocument", S),
            ("SaleDate", S),
            ("DeliveryDate", S),
            ("InvoiceDate", S),
            ("Status", S),
            ("PaymentTerms", S),
            ("Quantity", QTY),
            ("UnitPrice", MONEY),
            ("Subtotal", MONEY),
            ("Discount", MONEY),
            ("Tax", MONEY),
            ("Total", MONEY),
            ("Currency", S),
            ("Notes", S),
            ("InvoiceNumber", S),
            ("InvoiceKey", S),
            ("InvoiceFileUrl", S),
            ("CreatedAt", S),
            ("CreatedBy", S),
            ("UpdatedAt", S),
            ("UpdatedBy", S),
            ("GSI1PK", S),
            ("GSI1SK", S),
            ("GSI2PK", S),
            ("GSI2SK", S),
            ("GSI3PK", S),
            ("GSI3SK", S),
        ]),
        Entity::SaleLines => schema_of(&[
            ("PK", S),
            ("SK", S),
            ("EntityType", S),
            ("SaleId", S),
            ("LineNumber", Int),
            ("ProductCode", S),
            ("ProductName", S),
            ("ProductDescription", S),
            ("Quantity", QTY),
            ("Unit", S),
            ("UnitPrice", MONEY),
            ("Subtotal", MONEY),
            ("Discount", MONEY),
            ("Tax", MONEY),
            ("Total", MONEY),
            ("DiscountPercentage", Dec(7, 2)),
            ("TaxPercentage", Dec(7, 2)),
            ("Notes", S),
            ("CreatedAt", S),
            ("UpdatedAt", S),
        ]),
    }
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
            match entity {
                Some(Entity::Buyers) => {
                    if let Some(id) = row.i("id_comprador") {
                        self.buyers
                            .insert(id, (row.s("nome").unwrap_or_default(), row.s("cnpj")));
                    }
                }
                Some(Entity::Producers) => {
                    if let Some(id) = row.i("id_produtor") {
                        self.producers
                            .insert(id, (row.s("nome").unwrap_or_default(), row.s("cnpj")));
                    }
                }
                None => {
                    if let Some(id) = row.i("id_produtor") {
                        let mut c = Map::new();
                        put(&mut c, "Type", row.s("tipo"));
                        put(&mut c, "Number", row.s("numero"));
                        put(&mut c, "Issuer", row.s("emissor"));
                        put(&mut c, "ValidUntil", row.date("validade"));
                        self.certifications
                            .entry(id)
                            .or_default()
                            .push(Value::Object(c));
                    }
                }
                _ => {}
            }
        }
    }
}

/// `PK` `<PREFIX>#<code>`, `SK` `#METADATA#<prefix>` and the id attribute of a buyer or
/// producer item.
fn party_keys(m: &mut Map<String, Value>, prefix: &str, id_attr: &str, id: i64) {
    let code = code(prefix, id);
    m.insert("PK".into(), json!(format!("{prefix}#{code}")));
    m.insert(
        "SK".into(),
        json!(format!("#METADATA#{}", prefix.to_lowercase())),
    );
    m.insert(id_attr.into(), json!(code));
}

/// GSI1 of a buyer or producer: the `list` partition, sorted by `<PREFIX>#<Name>`.
fn by_name(m: &mut Map<String, Value>, list: &str, prefix: &str) {
    let name = m
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    m.insert("GSI1PK".into(), json!(list));
    m.insert("GSI1SK".into(), json!(format!("{prefix}#{name}")));
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<impl Into<Value>>) {
    if let Some(v) = v {
        m.insert(k.to_owned(), v.into());
    }
}

fn reject(column: &str, kind: &str, reason: String) -> Fate {
    Fate::Reject {
        column: Some(column.to_owned()),
        kind: kind.to_owned(),
        reason,
    }
}

/// The transform of one entity: S9 rows in, target items out; unknown codes are rejects.
#[derive(Debug, Clone)]
pub struct S9Transform {
    entity: Entity,
    lookups: Arc<Lookups>,
    invoice_url: String,
    schema: SchemaRef,
}

impl S9Transform {
    /// The transform of `entity`. `invoice_url` is the `InvoiceFileUrl` template with
    /// `{year}`, `{month}` (of the invoice date) and `{sale_id}`.
    pub fn new(entity: Entity, lookups: Arc<Lookups>, invoice_url: impl Into<String>) -> Self {
        S9Transform {
            entity,
            lookups,
            invoice_url: invoice_url.into(),
            schema: target_schema(entity),
        }
    }

    fn party(
        &self,
        row: &Row<'_>,
        m: &mut Map<String, Value>,
        status_code: &str,
    ) -> Result<(), Fate> {
        put(m, "Name", row.s("nome"));
        put(m, "TradeName", row.s("nome_fantasia"));
        let doc = row.s("cnpj");
        if let Some(doc) = &doc {
            let t = document_type(doc).ok_or_else(|| {
                reject(
                    "cnpj",
                    "bad_document",
                    format!("document {doc:?} is neither a CNPJ (14 digits) nor a CPF (11)"),
                )
            })?;
            m.insert("DocumentType".into(), json!(t));
        }
        put(m, "Document", doc.clone());
        put(m, "TaxId", doc);
        put(m, "Email", row.s("email"));
        put(m, "Phone", row.s("telefone"));
        put(m, "Mobile", row.s("celular"));
        let mut addr = Map::new();
        if let Some(a) = row.s("endereco") {
            let (street, number, complement) = split_address(&a);
            addr.insert("Street".into(), json!(street));
            put(&mut addr, "Number", number);
            put(&mut addr, "Complement", complement);
        }
        put(&mut addr, "Neighborhood", row.s("bairro"));
        put(&mut addr, "City", row.s("cidade"));
        put(&mut addr, "State", row.s("estado"));
        put(&mut addr, "PostalCode", row.s("cep"));
        put(&mut addr, "Country", row.s("pais"));
        m.insert("Address".into(), Value::Object(addr));
        let status = entity_status(status_code).ok_or_else(|| {
            reject(
                "status",
                "unknown_code",
                format!("status {status_code:?} is not one of A/I/B/S"),
            )
        })?;
        m.insert("Status".into(), json!(status));
        put(m, "ContactPerson", row.s("contato_nome"));
        put(m, "ContactEmail", row.s("contato_email"));
        put(m, "ContactPhone", row.s("contato_telefone"));
        put(m, "StateRegistration", row.s("inscricao_estadual"));
        put(m, "Notes", row.s("observacoes"));
        put(m, "CreatedAt", row.ts("data_cadastro"));
        put(m, "CreatedBy", row.s("usuario_cadastro"));
        put(m, "UpdatedAt", row.ts("data_atualizacao"));
        put(m, "UpdatedBy", row.s("usuario_atualizacao"));
        Ok(())
    }

    /// The item of one S9 row, or its fate.
    pub fn item(&self, row: &Row<'_>) -> Result<Map<String, Value>, Fate> {
        let mut m = Map::new();
        let key = self.entity.key();
        let id = row
            .i(key)
            .ok_or_else(|| reject(key, "missing_key", format!("{key} is null")))?;
        m.insert("EntityType".into(), json!(self.entity.entity_type()));
        match self.entity {
            Entity::Buyers => {
                party_keys(&mut m, "BUYER", "BuyerId", id);
                self.party(row, &mut m, &row.s("status").unwrap_or_default())?;
                if let Some(a) = m.get("Address").cloned() {
                    m.insert("BillingAddress".into(), a);
                }
                put(&mut m, "CreditLimit", row.dec("limite_credito"));
                if let Some(days) = row.i("prazo_pagamento") {
                    let t = payment_terms(days).ok_or_else(|| {
                        reject(
                            "prazo_pagamento",
                            "unknown_code",
                            format!("payment term {days} is not a positive number of days"),
                        )
                    })?;
                    m.insert("PaymentTerms".into(), json!(t));
                }
                by_name(&mut m, "BUYERS", "BUYER");
            }
            Entity::Producers => {
                party_keys(&mut m, "PRODUCER", "ProducerId", id);
                self.party(row, &mut m, &row.s("status").unwrap_or_default())?;
                if let Some(c) = row.s("categorias_produtos") {
                    let cats: Vec<Value> = c
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| json!(s))
                        .collect();
                    m.insert("ProductCategories".into(), Value::Array(cats));
                }
                let mut bank = Map::new();
                put(&mut bank, "Bank", row.s("banco"));
                put(&mut bank, "BankName", row.s("banco_nome"));
                put(&mut bank, "Agency", row.s("agencia"));
                put(&mut bank, "Account", row.s("conta"));
                if let Some(t) = row.s("tipo_conta") {
                    let mapped = account_type(&t).ok_or_else(|| {
                        reject(
                            "tipo_conta",
                            "unknown_code",
                            format!("account type {t:?} is not one of CC/CP"),
                        )
                    })?;
                    bank.insert("AccountType".into(), json!(mapped));
                }
                if !bank.is_empty() {
                    m.insert("BankAccount".into(), Value::Object(bank));
                }
                let certs = self
                    .lookups
                    .certifications
                    .get(&id)
                    .cloned()
                    .unwrap_or_default();
                m.insert("Certifications".into(), Value::Array(certs));
                by_name(&mut m, "PRODUCERS", "PRODUCER");
            }
            Entity::Sales => {
                let sid = code("SALE", id);
                m.insert("PK".into(), json!(format!("SALE#{sid}")));
                m.insert("SK".into(), json!("#METADATA#sale"));
                m.insert("SaleId".into(), json!(sid));
                let buyer = row.i("id_comprador").ok_or_else(|| {
                    reject(
                        "id_comprador",
                        "missing_value",
                        "id_comprador is null".into(),
                    )
                })?;
                let producer = row.i("id_produtor").ok_or_else(|| {
                    reject("id_produtor", "missing_value", "id_produtor is null".into())
                })?;
                let bid = code("BUYER", buyer);
                let pid = code("PRODUCER", producer);
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
                let sale_date = row.ts("data_venda").ok_or_else(|| {
                    reject("data_venda", "missing_value", "data_venda is null".into())
                })?;
                m.insert("SaleDate".into(), json!(sale_date));
                put(&mut m, "DeliveryDate", row.ts("data_entrega"));
                put(&mut m, "InvoiceDate", row.ts("data_nota"));
                let code_s = row.s("status").unwrap_or_default();
                let status = sale_status(&code_s).ok_or_else(|| {
                    reject("status", "unknown_code", format!("sale status {code_s:?} is not one of RASCUNHO/CONFIRMADO/FATURADO/ENVIADO/ENTREGUE/CANCELADO"))
                })?;
                m.insert("Status".into(), json!(status));
                if let Some(days) = row.i("prazo_pagamento") {
                    let t = payment_terms(days).ok_or_else(|| {
                        reject(
                            "prazo_pagamento",
                            "unknown_code",
                            format!("payment term {days} is not a positive number of days"),
                        )
                    })?;
                    m.insert("PaymentTerms".into(), json!(t));
                }
                put(&mut m, "Quantity", row.dec("quantidade_total"));
                put(&mut m, "UnitPrice", row.dec("preco_unitario"));
                put(&mut m, "Subtotal", row.dec("subtotal"));
                put(&mut m, "Discount", row.dec("desconto"));
                put(&mut m, "Tax", row.dec("imposto"));
                put(&mut m, "Total", row.dec("valor_total"));
                put(&mut m, "Currency", row.s("moeda"));
                put(&mut m, "Notes", row.s("observacoes"));
                let invoice = row.s("numero_nota");
                if invoice.is_some() {
                    let when = row.ts("data_nota").unwrap_or_else(|| sale_date.clone());
                    let url = self
                        .invoice_url
                        .replace("{year}", &when[..4])
                        .replace("{month}", &when[5..7])
                        .replace("{sale_id}", &sid);
                    m.insert("InvoiceFileUrl".into(), json!(url));
                }
                put(&mut m, "InvoiceNumber", invoice);
                put(&mut m, "InvoiceKey", row.s("chave_nota"));
                put(&mut m, "CreatedAt", row.ts("data_cadastro"));
                put(&mut m, "CreatedBy", row.s("usuario_cadastro"));
                put(&mut m, "UpdatedAt", row.ts("data_atualizacao"));
                put(&mut m, "UpdatedBy", row.s("usuario_atualizacao"));
                m.insert("GSI1PK".into(), json!(format!("BUYER#{bid}")));
                m.insert("GSI1SK".into(), json!(format!("SALE#{sale_date}")));
                m.insert("GSI2PK".into(), json!(format!("PRODUCER#{pid}")));
                m.insert("GSI2SK".into(), json!(format!("SALE#{sale_date}")));
                m.insert("GSI3PK".into(), json!(format!("STATUS#{status}")));
                m.insert("GSI3SK".into(), json!(format!("SALE#{sale_date}")));
            }
            Entity::SaleLines => {
                let sale = row.i("id_venda").ok_or_else(|| {
                    reject("id_venda", "missing_value", "id_venda is null".into())
                })?;
                let number = row.i("numero_linha").ok_or_else(|| {
                    reject(
                        "numero_linha",
                        "missing_value",
                        "numero_linha is null".into(),
                    )
                })?;
                let sid = code("SALE", sale);
                m.insert("PK".into(), json!(format!("SALE#{sid}")));
                m.insert("SK".into(), json!(format!("LINE#{number:03}")));
                m.insert("SaleId".into(), json!(sid));
                m.insert("LineNumber".into(), json!(number));
                put(&mut m, "ProductCode", row.s("codigo_produto"));
                put(&mut m, "ProductName", row.s("nome_produto"));
                put(&mut m, "ProductDescription", row.s("descricao_produto"));
                put(&mut m, "Quantity", row.dec("quantidade"));
                put(&mut m, "Unit", row.s("unidade"));
                put(&mut m, "UnitPrice", row.dec("preco_unitario"));
                put(&mut m, "Subtotal", row.dec("subtotal"));
                put(&mut m, "Discount", row.dec("desconto"));
                put(&mut m, "Tax", row.dec("imposto"));
                put(&mut m, "Total", row.dec("total"));
                put(&mut m, "DiscountPercentage", row.dec("percentual_desconto"));
                put(&mut m, "TaxPercentage", row.dec("percentual_imposto"));
                put(&mut m, "Notes", row.s("observacoes"));
                put(&mut m, "CreatedAt", row.ts("data_cadastro"));
                put(&mut m, "UpdatedAt", row.ts("data_atualizacao"));
            }
        }
        Ok(m)
    }
}

impl Transform for S9Transform {
    fn name(&self) -> &str {
        "s9_to_dynamodb"
    }

    fn output_schema(&self, _input: &SchemaRef) -> etl_core::Result<SchemaRef> {
        Ok(self.schema.clone())
    }

    fn transform(&self, mut batch: Batch) -> etl_core::Result<Batch> {
        map_rows("s9_to_dynamodb", &mut batch, &self.schema, |row| {
            self.item(row)
        })?;
        Ok(batch)
    }
}
