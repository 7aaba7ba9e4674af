//! S9 rows -> the target DynamoDB design: keys, PascalCase attributes, code maps, GSIs,
//! ISO-8601 `Z` timestamps, money as numbers, split addresses, nested certifications.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use etl_core::{Batch, Fate, Transform};
use etl_sink_dynamodb::json_items::{
    Attr, Codes, Row, item_schema, map_code, map_rows, need, reject,
};
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

    /// Its name in files and reports, S9 table, S9 key column and `EntityType`.
    fn info(self) -> [&'static str; 4] {
        match self {
            Entity::Buyers => ["buyers", "compradores", "id_comprador", "Buyer"],
            Entity::Producers => ["producers", "produtores", "id_produtor", "Producer"],
            Entity::Sales => ["sales", "vendas", "id_venda", "Sale"],
            Entity::SaleLines => ["sale_lines", "linhas_venda", "id_linha", "SaleLine"],
        }
    }

    /// Name used in files and reports.
    pub fn name(self) -> &'static str {
        self.info()[0]
    }

    /// The S9 table.
    pub fn table(self) -> &'static str {
        self.info()[1]
    }

    /// The S9 key column.
    pub fn key(self) -> &'static str {
        self.info()[2]
    }

    /// The entities its items reference (foreign keys).
    pub fn parents(self) -> &'static [Entity] {
        match self {
            Entity::Sales => &[Entity::Buyers, Entity::Producers],
            Entity::SaleLines => &[Entity::Sales],
            _ => &[],
        }
    }

    /// `EntityType` of its items.
    pub fn entity_type(self) -> &'static str {
        self.info()[3]
    }
}

/// Sale status codes.
const SALE_STATUS: Codes = &[
    ("RASCUNHO", "DRAFT"),
    ("CONFIRMADO", "CONFIRMED"),
    ("FATURADO", "INVOICED"),
    ("ENVIADO", "SHIPPED"),
    ("ENTREGUE", "DELIVERED"),
    ("CANCELADO", "CANCELLED"),
];
/// Buyer and producer status codes.
const ENTITY_STATUS: Codes = &[
    ("A", "ACTIVE"),
    ("I", "INACTIVE"),
    ("B", "BLOCKED"),
    ("S", "SUSPENDED"),
];
/// Bank account types.
const ACCOUNT_TYPE: Codes = &[("CC", "CHECKING"), ("CP", "SAVINGS")];

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

use Attr::{Dec, Int, Map as M, MapList, S, StrList};

/// The attributes of a map, each with the S9 column it is copied from (`""`: computed).
type Fields = &'static [(&'static str, &'static str)];

const ADDRESS: Fields = &[
    ("Street", ""),
    ("Number", ""),
    ("Complement", ""),
    ("Neighborhood", "bairro"),
    ("City", "cidade"),
    ("State", "estado"),
    ("PostalCode", "cep"),
    ("Country", "pais"),
];
const BANK: Fields = &[
    ("Bank", "banco"),
    ("BankName", "banco_nome"),
    ("Agency", "agencia"),
    ("Account", "conta"),
    ("AccountType", ""),
];
const CERT: Fields = &[
    ("Type", "tipo"),
    ("Number", "numero"),
    ("Issuer", "emissor"),
    ("ValidUntil", "validade"),
];
const fn names<const N: usize>(f: Fields) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = f[i].0;
        i += 1;
    }
    out
}
const ADDRESS_NAMES: &[&str] = &names::<8>(ADDRESS);
const BANK_NAMES: &[&str] = &names::<5>(BANK);
const CERT_NAMES: &[&str] = &names::<4>(CERT);

const MONEY: Attr = Dec(18, 2);
const QTY: Attr = Dec(18, 3);

/// An attribute: its type and the S9 column it is copied from as it is (text, decimal,
/// ISO timestamp: [`Row::value`]), or `""` when the transform computes it.
type Spec = (&'static str, Attr, &'static str);

/// Every item's key and type.
const KEY: &[Spec] = &[("PK", S, ""), ("SK", S, ""), ("EntityType", S, "")];
/// What sales and their lines share.
const AMOUNTS: &[Spec] = &[
    ("UnitPrice", MONEY, "preco_unitario"),
    ("Subtotal", MONEY, "subtotal"),
    ("Discount", MONEY, "desconto"),
    ("Tax", MONEY, "imposto"),
];
/// What buyers and producers share.
const PARTY: &[Spec] = &[
    ("Name", S, "nome"),
    ("TradeName", S, "nome_fantasia"),
    ("Document", S, "cnpj"),
    ("DocumentType", S, ""),
    ("Email", S, "email"),
    ("Phone", S, "telefone"),
    ("Mobile", S, "celular"),
    ("Address", M(ADDRESS_NAMES), ""),
    ("Status", S, ""),
    ("ContactPerson", S, "contato_nome"),
    ("ContactEmail", S, "contato_email"),
    ("ContactPhone", S, "contato_telefone"),
    ("TaxId", S, "cnpj"),
    ("StateRegistration", S, "inscricao_estadual"),
    ("Notes", S, "observacoes"),
    ("GSI1PK", S, ""),
    ("GSI1SK", S, ""),
];
const AUDIT: &[Spec] = &[
    ("CreatedAt", S, "data_cadastro"),
    ("CreatedBy", S, "usuario_cadastro"),
    ("UpdatedAt", S, "data_atualizacao"),
    ("UpdatedBy", S, "usuario_atualizacao"),
];
const BUYER: &[Spec] = &[
    ("BuyerId", S, ""),
    ("BillingAddress", M(ADDRESS_NAMES), ""),
    ("CreditLimit", MONEY, "limite_credito"),
    ("PaymentTerms", S, ""),
];
const PRODUCER: &[Spec] = &[
    ("ProducerId", S, ""),
    ("ProductCategories", StrList, ""),
    ("BankAccount", M(BANK_NAMES), ""),
    ("Certifications", MapList(CERT_NAMES), ""),
];
const SALE: &[Spec] = &[
    ("SaleId", S, ""),
    ("BuyerId", S, ""),
    ("BuyerName", S, ""),
    ("BuyerDocument", S, ""),
    ("ProducerId", S, ""),
    ("ProducerName", S, ""),
    ("ProducerDocument", S, ""),
    ("SaleDate", S, ""),
    ("DeliveryDate", S, "data_entrega"),
    ("InvoiceDate", S, "data_nota"),
    ("Status", S, ""),
    ("PaymentTerms", S, ""),
    ("Quantity", QTY, "quantidade_total"),
    ("Total", MONEY, "valor_total"),
    ("Currency", S, "moeda"),
    ("Notes", S, "observacoes"),
    ("InvoiceNumber", S, "numero_nota"),
    ("InvoiceKey", S, "chave_nota"),
    ("InvoiceFileUrl", S, ""),
    ("GSI1PK", S, ""),
    ("GSI1SK", S, ""),
    ("GSI2PK", S, ""),
    ("GSI2SK", S, ""),
    ("GSI3PK", S, ""),
    ("GSI3SK", S, ""),
];
const LINE: &[Spec] = &[
    ("SaleId", S, ""),
    ("LineNumber", Int, ""),
    ("ProductCode", S, "codigo_produto"),
    ("ProductName", S, "nome_produto"),
    ("ProductDescription", S, "descricao_produto"),
    ("Quantity", QTY, "quantidade"),
    ("Unit", S, "unidade"),
    ("Total", MONEY, "total"),
    ("DiscountPercentage", Dec(7, 2), "percentual_desconto"),
    ("TaxPercentage", Dec(7, 2), "percentual_imposto"),
    ("Notes", S, "observacoes"),
    ("CreatedAt", S, "data_cadastro"),
    ("UpdatedAt", S, "data_atualizacao"),
];

/// The attributes of an entity's items, in column order.
fn specs(entity: Entity) -> Vec<Spec> {
    let parts: &[&[Spec]] = match entity {
        Entity::Buyers => &[KEY, PARTY, BUYER, AUDIT],
        Entity::Producers => &[KEY, PARTY, PRODUCER, AUDIT],
        Entity::Sales => &[KEY, SALE, AMOUNTS, AUDIT],
        Entity::SaleLines => &[KEY, LINE, AMOUNTS],
    };
    parts.concat()
}

/// The Arrow schema of an entity's items (`data/transformed/<entity>.parquet`).
pub fn target_schema(entity: Entity) -> SchemaRef {
    let attrs: Vec<(&str, Attr)> = specs(entity).iter().map(|(n, a, _)| (*n, *a)).collect();
    item_schema(&super::keys(), &attrs)
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
                    row.copy_into(&mut c, CERT.iter().copied());
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
    copies: Vec<(&'static str, &'static str)>,
}

impl S9Transform {
    /// The transform of `entity`. `invoice_url` is the `InvoiceFileUrl` template with
    /// `{year}`, `{month}` (of the invoice date) and `{sale_id}`.
    pub fn new(entity: Entity, lookups: Arc<Lookups>, invoice_url: impl Into<String>) -> Self {
        let specs = specs(entity).into_iter();
        S9Transform {
            entity,
            lookups,
            invoice_url: invoice_url.into(),
            schema: target_schema(entity),
            copies: specs
                .filter(|s| !s.2.is_empty())
                .map(|(a, _, c)| (a, c))
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
        row.copy_into(&mut addr, ADDRESS.iter().copied());
        m.insert("Address".into(), Value::Object(addr));
        let code = row.s("status").unwrap_or_default();
        let status = map_code(ENTITY_STATUS, &code, "status", "status")?;
        m.insert("Status".into(), json!(status));
        Ok(())
    }

    /// The item of one S9 row, or its fate.
    pub fn item(&self, row: &Row<'_>) -> Result<Map<String, Value>, Fate> {
        let key = self.entity.key();
        let id = row
            .i(key)
            .ok_or_else(|| reject(key, "missing_key", format!("{key} is null")))?;
        let mut m = Map::new();
        row.copy_into(&mut m, self.copies.iter().copied());
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
                row.copy_into(&mut bank, BANK.iter().copied());
                if let Some(t) = row.s("tipo_conta") {
                    let mapped = map_code(ACCOUNT_TYPE, &t, "tipo_conta", "account type")?;
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
                let sid = code("SALE", id);
                m.insert("PK".into(), json!(format!("SALE#{sid}")));
                m.insert("SK".into(), json!("#METADATA#sale"));
                m.insert("SaleId".into(), json!(sid));
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
                let status = map_code(SALE_STATUS, &code_s, "status", "sale status")?;
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
