//! A deterministic generator of realistic S9 data at scale, with some bad rows.
//!
//! The bundled sample (`examples/data/s9/s9-sample-data.sql`) is loaded first, so its rows
//! keep their ids (sale 1 is the golden `SALE001`); generated rows follow. Bad rows, on
//! purpose and deterministic:
//! * buyers with an unknown status code `X` (every 997th);
//! * producers with an unknown account type `XX` (every 499th);
//! * sales with an unknown status `PERDIDO` (every 1009th), a buyer that does not exist
//!   (every 2003rd), a non-positive payment term (every 1999th), a total that does not
//!   add up (every 503rd: a warning, still loaded);
//! * sales whose two lines share a line number (every 1511th: duplicate keys).

use std::fmt::Write as _;

use sqlx::PgPool;
use sqlx::postgres::PgPoolCopyExt;

/// The DDL of the S9 schema.
pub const SCHEMA_SQL: &str = include_str!("../../data/s9/schema.sql");
/// The original project's sample rows.
pub const SAMPLE_SQL: &str = include_str!("../../data/s9/s9-sample-data.sql");

/// Rows the sample already holds (generated ids start after them).
const SAMPLE_BUYERS: u32 = 3;
const SAMPLE_PRODUCERS: u32 = 2;
const SAMPLE_SALES: u32 = 6;
const SAMPLE_LINES: u32 = 7;
const SAMPLE_CERTS: u32 = 3;

/// How much to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenOptions {
    /// Sales (each with 1 to 5 lines); buyers are sales/20, producers sales/50.
    pub sales: u32,
    /// Random seed.
    pub seed: u64,
}

/// What was generated, per table (sample rows included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GenCounts {
    /// compradores.
    pub buyers: u64,
    /// produtores.
    pub producers: u64,
    /// vendas.
    pub sales: u64,
    /// linhas_venda.
    pub lines: u64,
    /// certificacoes.
    pub certifications: u64,
}

const STREETS: &[&str] = &[
    "Av. Paulista",
    "Rua Augusta",
    "Av. Faria Lima",
    "Rua da Consolação",
    "Av. Brasil",
    "Rua XV de Novembro",
    "Rodovia SP-330",
    "Estrada Municipal",
    "Av. Rio Branco",
    "Rua das Flores",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("São Paulo", "SP", "Bela Vista"),
    ("Campinas", "SP", "Cambuí"),
    ("Piracicaba", "SP", "Centro"),
    ("Curitiba", "PR", "Batel"),
    ("Belo Horizonte", "MG", "Savassi"),
    ("Goiânia", "GO", "Setor Bueno"),
    ("Porto Alegre", "RS", "Moinhos de Vento"),
    ("Londrina", "PR", "Gleba Palhano"),
];
const COMPANY: &[&str] = &[
    "Alfa",
    "Beta",
    "Cerrado",
    "Delta",
    "Horizonte",
    "Ipê",
    "Jatobá",
    "Pampa",
    "Serra",
    "Vale",
];
const KIND: &[&str] = &[
    "Comércio",
    "Distribuidora",
    "Alimentos",
    "Agro",
    "Atacado",
    "Foods",
];
const PRODUCTS: &[(&str, &str, &str, &str)] = &[
    (
        "PROD-CORN-001",
        "Premium Yellow Corn",
        "Grade A yellow corn, 25kg bags",
        "KG",
    ),
    (
        "PROD-CORN-002",
        "Standard Yellow Corn",
        "Grade B yellow corn, 25kg bags",
        "KG",
    ),
    ("PROD-SOY-001", "Soybeans", "Non-GMO soybeans, bulk", "KG"),
    (
        "PROD-VEG-001",
        "Fresh Tomatoes",
        "Organic tomatoes, 10kg boxes",
        "KG",
    ),
    (
        "PROD-VEG-002",
        "Fresh Lettuce",
        "Hydroponic lettuce, premium quality",
        "KG",
    ),
    ("PROD-FRU-001", "Oranges", "Pera oranges, 20kg boxes", "KG"),
    (
        "PROD-COF-001",
        "Arabica Coffee",
        "Green arabica beans, 60kg sacks",
        "SC",
    ),
];
const SALE_STATUS: &[&str] = &[
    "RASCUNHO",
    "CONFIRMADO",
    "FATURADO",
    "ENVIADO",
    "ENTREGUE",
    "CANCELADO",
];
const TERMS: &[i32] = &[15, 30, 45, 60, 90];

fn q(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn ts(base_days: i64, rng: &mut fastrand::Rng) -> chrono::NaiveDateTime {
    let epoch = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .expect("date")
        .and_hms_opt(8, 0, 0)
        .expect("time");
    epoch + chrono::Duration::days(base_days) + chrono::Duration::minutes(rng.i64(0..600))
}

fn cnpj(rng: &mut fastrand::Rng) -> String {
    format!(
        "{:02}.{:03}.{:03}/0001-{:02}",
        rng.u32(10..99),
        rng.u32(0..1000),
        rng.u32(0..1000),
        rng.u32(0..100)
    )
}

fn company(rng: &mut fastrand::Rng, id: u32) -> (String, String) {
    let a = COMPANY[rng.usize(..COMPANY.len())];
    let k = KIND[rng.usize(..KIND.len())];
    (format!("{a} {k} {id} Ltda"), format!("{a} {k}"))
}

/// Write the address, city and contact columns shared by buyers and producers.
fn party(out: &mut String, rng: &mut fastrand::Rng, name: &str, domain: &str) {
    let street = STREETS[rng.usize(..STREETS.len())];
    let (city, state, hood) = CITIES[rng.usize(..CITIES.len())];
    let email = format!("contato@{domain}.com.br");
    let _ = write!(out, ",");
    q(out, &email);
    let _ = write!(
        out,
        ",\"+55 11 {:04}-{:04}\",\"+55 11 9{:04}-{:04}\",",
        rng.u32(1000..9999),
        rng.u32(0..9999),
        rng.u32(1000..9999),
        rng.u32(0..9999)
    );
    let address = if rng.bool() {
        format!("{street}, {}, Sala {}", rng.u32(1..3000), rng.u32(1..40))
    } else {
        format!("{street}, {}", rng.u32(1..3000))
    };
    q(out, &address);
    out.push(',');
    q(out, hood);
    out.push(',');
    q(out, city);
    let _ = write!(
        out,
        ",{state},\"{:05}-{:03}\",BR",
        rng.u32(1000..99999),
        rng.u32(0..999)
    );
    let _ = name;
}

async fn copy(pool: &PgPool, table: &str, columns: &str, csv: &mut String) -> anyhow::Result<()> {
    if csv.is_empty() {
        return Ok(());
    }
    let mut c = pool
        .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN (FORMAT csv)"))
        .await?;
    c.send(std::mem::take(csv).into_bytes()).await?;
    c.finish().await?;
    Ok(())
}

/// Create the schema, load the sample, then generate `options.sales` more sales with their
/// buyers, producers, certifications and lines. Deterministic for a given seed.
pub async fn generate(pool: &PgPool, options: GenOptions) -> anyhow::Result<GenCounts> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(SCHEMA_SQL))
        .execute(pool)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(SAMPLE_SQL))
        .execute(pool)
        .await?;
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let n_buyers = (options.sales / 20).max(10);
    let n_producers = (options.sales / 50).max(5);
    let mut csv = String::new();

    // compradores
    let bcols = "id_comprador, nome, nome_fantasia, cnpj, email, telefone, celular, endereco, bairro, cidade, estado, cep, pais, status, limite_credito, prazo_pagamento, contato_nome, contato_email, contato_telefone, inscricao_estadual, observacoes, data_cadastro, usuario_cadastro, data_atualizacao, usuario_atualizacao";
    for i in 0..n_buyers {
        let id = SAMPLE_BUYERS + 1 + i;
        let (name, trade) = company(&mut rng, id);
        let _ = write!(csv, "{id},");
        q(&mut csv, &name);
        csv.push(',');
        q(&mut csv, &trade);
        csv.push(',');
        q(&mut csv, &cnpj(&mut rng));
        party(&mut csv, &mut rng, &name, &format!("comprador{id}"));
        let status = if id.is_multiple_of(997) {
            "X"
        } else {
            ["A", "A", "A", "A", "I", "B", "S"][rng.usize(..7)]
        };
        let created = ts(rng.i64(0..700), &mut rng);
        let _ = write!(
            csv,
            ",{status},{},{},\"Contato {id}\",\"compras{id}@example.com.br\",\"+55 11 9{:04}-{:04}\",\"{:03}.{:03}.{:03}.{:03}\",",
            money(rng.i64(10_000..50_000_000)),
            TERMS[rng.usize(..TERMS.len())],
            rng.u32(1000..9999),
            rng.u32(0..9999),
            rng.u32(0..999),
            rng.u32(0..999),
            rng.u32(0..999),
            rng.u32(0..999),
        );
        if rng.u8(..4) == 0 {
            q(&mut csv, "Cliente preferencial");
        }
        let _ = writeln!(
            csv,
            ",{created},admin@i2speedex.com,{},admin@i2speedex.com",
            created + chrono::Duration::days(rng.i64(0..30))
        );
    }
    copy(pool, "compradores", bcols, &mut csv).await?;

    // produtores + certificacoes
    let pcols = "id_produtor, nome, nome_fantasia, cnpj, email, telefone, celular, endereco, bairro, cidade, estado, cep, pais, status, categorias_produtos, contato_nome, contato_email, contato_telefone, inscricao_estadual, banco, banco_nome, agencia, conta, tipo_conta, observacoes, data_cadastro, usuario_cadastro, data_atualizacao, usuario_atualizacao";
    let mut certs = String::new();
    let mut cert_id = SAMPLE_CERTS;
    let banks = [
        ("001", "Banco do Brasil"),
        ("237", "Bradesco"),
        ("341", "Itaú"),
        ("104", "Caixa"),
    ];
    let cats = [
        "GRAINS",
        "CORN",
        "SOYBEANS",
        "VEGETABLES",
        "FRUITS",
        "COFFEE",
    ];
    for i in 0..n_producers {
        let id = SAMPLE_PRODUCERS + 1 + i;
        let (name, trade) = company(&mut rng, id);
        let _ = write!(csv, "{id},");
        q(&mut csv, &format!("Fazenda {name}"));
        csv.push(',');
        q(&mut csv, &trade);
        csv.push(',');
        q(&mut csv, &cnpj(&mut rng));
        party(&mut csv, &mut rng, &name, &format!("produtor{id}"));
        let status = ["A", "A", "A", "I", "S"][rng.usize(..5)];
        let n_cats = rng.usize(1..4);
        let start = rng.usize(..cats.len());
        let categories: Vec<&str> = (0..n_cats)
            .map(|k| cats[(start + k) % cats.len()])
            .collect();
        let (bank, bank_name) = banks[rng.usize(..banks.len())];
        let account_type = if id.is_multiple_of(499) {
            "XX"
        } else if rng.bool() {
            "CC"
        } else {
            "CP"
        };
        let created = ts(rng.i64(0..700), &mut rng);
        let _ = writeln!(
            csv,
            ",{status},\"{}\",\"Produtor {id}\",\"vendas{id}@example.com.br\",\"+55 19 9{:04}-{:04}\",\"{:03}.{:03}.{:03}.{:03}\",{bank},\"{bank_name}\",\"{:04}-{}\",\"{:05}-{}\",{account_type},,{created},admin@i2speedex.com,{},admin@i2speedex.com",
            categories.join(","),
            rng.u32(1000..9999),
            rng.u32(0..9999),
            rng.u32(0..999),
            rng.u32(0..999),
            rng.u32(0..999),
            rng.u32(0..999),
            rng.u32(0..9999),
            rng.u32(0..9),
            rng.u32(0..99999),
            rng.u32(0..9),
            created + chrono::Duration::days(rng.i64(0..30))
        );
        for _ in 0..rng.usize(0..3) {
            cert_id += 1;
            let (kind, issuer) = [
                ("ORGANIC", "IBD"),
                ("FAIR_TRADE", "FLO"),
                ("GLOBALGAP", "GGAP"),
            ][rng.usize(..3)];
            let valid = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("date")
                + chrono::Duration::days(rng.i64(0..1000));
            let _ = writeln!(
                certs,
                "{cert_id},{id},{kind},{}-{cert_id},{issuer},{valid}",
                &kind[..3]
            );
        }
    }
    copy(pool, "produtores", pcols, &mut csv).await?;
    copy(
        pool,
        "certificacoes",
        "id_certificacao, id_produtor, tipo, numero, emissor, validade",
        &mut certs,
    )
    .await?;

    // vendas + linhas_venda
    let vcols = "id_venda, id_comprador, id_produtor, data_venda, data_entrega, data_nota, status, prazo_pagamento, quantidade_total, preco_unitario, subtotal, desconto, imposto, valor_total, moeda, numero_nota, chave_nota, observacoes, data_cadastro, usuario_cadastro, data_atualizacao, usuario_atualizacao";
    let lcols = "id_linha, id_venda, numero_linha, codigo_produto, nome_produto, descricao_produto, quantidade, unidade, preco_unitario, subtotal, desconto, imposto, total, percentual_desconto, percentual_imposto, observacoes, data_cadastro, data_atualizacao";
    let mut lines = String::new();
    let mut line_id = SAMPLE_LINES;
    let total_buyers = SAMPLE_BUYERS + n_buyers;
    let total_producers = SAMPLE_PRODUCERS + n_producers;
    for i in 0..options.sales {
        let id = SAMPLE_SALES + 1 + i;
        let buyer = if id.is_multiple_of(2003) {
            total_buyers + 1000 + id
        } else {
            rng.u32(1..=total_buyers)
        };
        let producer = rng.u32(1..=total_producers);
        let sold = ts(rng.i64(0..760), &mut rng);
        let status = if id.is_multiple_of(1009) {
            "PERDIDO"
        } else {
            SALE_STATUS[rng.usize(..SALE_STATUS.len())]
        };
        let invoiced = matches!(status, "FATURADO" | "ENVIADO" | "ENTREGUE");
        let terms = if id.is_multiple_of(1999) {
            0
        } else {
            TERMS[rng.usize(..TERMS.len())]
        };
        // lines
        let n_lines = rng.u32(1..=5);
        let (mut qty_total, mut sub_total, mut disc_total, mut tax_total) =
            (0i64, 0i64, 0i64, 0i64);
        let mut last_price = 0i64;
        for ln in 1..=n_lines {
            line_id += 1;
            let number = if id.is_multiple_of(1511) && ln == 2 {
                1
            } else {
                ln
            };
            let (code, pname, desc, unit) = PRODUCTS[rng.usize(..PRODUCTS.len())];
            let qty = rng.i64(1..200) * 10;
            let price = rng.i64(500..9000);
            let sub = qty * price;
            let pct_disc = [0i64, 0, 100, 200, 500][rng.usize(..5)];
            let disc = sub * pct_disc / 10_000;
            let tax = (sub - disc) / 10;
            let total = sub - disc + tax;
            qty_total += qty;
            sub_total += sub;
            disc_total += disc;
            tax_total += tax;
            last_price = price;
            let _ = writeln!(
                lines,
                "{line_id},{id},{number},{code},\"{pname}\",\"{desc}\",{qty},{unit},{},{},{},{},{},{},10.00,,{sold},{}",
                money(price),
                money(sub),
                money(disc),
                money(tax),
                money(total),
                money(pct_disc),
                sold + chrono::Duration::minutes(5)
            );
        }
        let mut total = sub_total - disc_total + tax_total;
        if id.is_multiple_of(503) {
            total += 100;
        }
        let delivery = sold + chrono::Duration::days(rng.i64(5..30));
        let _ = write!(
            csv,
            "{id},{buyer},{producer},{sold},{},",
            delivery.date().and_hms_opt(0, 0, 0).expect("midnight")
        );
        if invoiced {
            let _ = write!(csv, "{}", sold + chrono::Duration::hours(1));
        }
        let _ = write!(
            csv,
            ",{status},{terms},{qty_total},{},{},{},{},{},BRL,",
            money(last_price),
            money(sub_total),
            money(disc_total),
            money(tax_total),
            money(total)
        );
        if invoiced {
            let _ = write!(csv, "NF-{}-{id:06},3526{id:040}", sold.format("%Y"));
        } else {
            csv.push(',');
        }
        let _ = writeln!(
            csv,
            ",\"Pedido {id}\",{sold},user@i2speedex.com,{},user@i2speedex.com",
            sold + chrono::Duration::minutes(30)
        );
        if csv.len() > 4 << 20 {
            copy(pool, "vendas", vcols, &mut csv).await?;
            copy(pool, "linhas_venda", lcols, &mut lines).await?;
        }
    }
    copy(pool, "vendas", vcols, &mut csv).await?;
    copy(pool, "linhas_venda", lcols, &mut lines).await?;
    sqlx::raw_sql("ANALYZE").execute(pool).await?;
    Ok(GenCounts {
        buyers: (SAMPLE_BUYERS + n_buyers) as u64,
        producers: (SAMPLE_PRODUCERS + n_producers) as u64,
        sales: (SAMPLE_SALES + options.sales) as u64,
        lines: line_id as u64,
        certifications: cert_id as u64,
    })
}

/// A fresh S9 database at `url` (a throwaway cluster): the S9 tables dropped, then
/// [`generate`]d again.
pub async fn regenerate(url: &str, options: GenOptions) -> anyhow::Result<GenCounts> {
    let pool = PgPool::connect(url).await?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS compradores, produtores, vendas, linhas_venda, certificacoes",
    )
    .execute(&pool)
    .await?;
    let counts = generate(&pool, options).await?;
    tracing::info!(?counts, "generated S9 data");
    pool.close().await;
    Ok(counts)
}
