//! A deterministic generator of CITES Trade Database bulk CSV files.
//!
//! The module is `etl_examples::cites::generate`: `gen` is a reserved keyword in edition 2024.
//!
//! The output imitates the real "Full CITES Trade Database Download" (v2025.1: 56 files
//! `trade_db_1.csv` .. `trade_db_56.csv` of 500,000 rows each) closely enough to exercise a
//! loader end to end:
//!
//! * the exact header, `"Id","Year",...,"Origin.permit.RandomID"`, LF line endings, UTF-8;
//! * every text field double-quoted, including `Id` (a 10-digit number written zero-padded);
//!   `Year` and `Quantity` unquoted;
//! * a missing text value is `""` (an empty, quoted string, as in the real release);
//! * a missing `Quantity` is written as **nothing at all** (`...,"skins",,"kg",...`). The
//!   release has the shape of an R `write.csv` export (R-style column names such as
//!   `Reporter.type`; only character columns quoted; empty strings as `""`), and such an
//!   export writes a missing number as the bare `na` string, here empty and unquoted; `""`
//!   would be an empty *string* in a numeric column. (Users read the release with
//!   `na = ""`, which accepts both.) Rows without a quantity are valid rows (`NULL`
//!   quantity), not bad rows, and are rare (see [`GenOptions::missing_quantity_rate`]);
//! * `"NA"` is Namibia, a real and fairly common country code; `"XX"` is "unknown country";
//! * files are numbered chronologically like the real release (the lower the file number,
//!   the earlier its years), with some late-reported rows of any year mixed in; recent
//!   years are much more common than early ones;
//! * taxa come from real CITES-listed taxa with the taxonomy CITES uses: the 43 Arctic
//!   species under their CITES names (`Branta canadensis leucopareia`, `Nyctea scandiaca`,
//!   about 15 % of the rows, so small samples hold enough of them; the first Arctic rows of
//!   every file go through all 43 species once, so every file names each of them at least
//!   once if it has a few hundred rows) and about 235 others,
//!   some at a higher level (`Aloe spp.`, `Orchidaceae spp.`); plants have an empty `Class`
//!   and older (Cronquist) orders, as in the real data;
//! * permit ids are 10 lowercase hex digits (the form the real release uses, e.g.
//!   `"387fcd3c1d"`), often empty.
//!
//! Two kinds of deliberate noise are injected:
//!
//! * with [`GenOptions::unknown_taxon_rate`] a row names a real CITES taxon that is **not** in
//!   [`known_taxa`] (so not in the file written by [`write_species_csv`]);
//! * with [`GenOptions::bad_row_rate`] a row is malformed in one of the ways of
//!   [`BadRowKind`], cycling through them in order so every kind appears. The bulk generator
//!   never writes an unterminated quote.
//!
//! Same options, same bytes: the generator uses its own splitmix64 PRNG and no floating-point
//! function whose result could differ between platforms.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The header of every real CITES bulk file (and of every generated one), without the LF.
pub const HEADER: &str = "\"Id\",\"Year\",\"Appendix\",\"Taxon\",\"Class\",\"Order\",\"Family\",\"Genus\",\"Term\",\"Quantity\",\"Unit\",\"Importer\",\"Exporter\",\"Origin\",\"Purpose\",\"Source\",\"Reporter.type\",\"Import.permit.RandomID\",\"Export.permit.RandomID\",\"Origin.permit.RandomID\"";

/// Number of fields in a well-formed row.
pub const FIELD_COUNT: usize = 20;

/// First year of CITES trade data.
pub const FIRST_YEAR: u16 = 1975;

/// Last year the generator writes in a valid row.
pub const LAST_YEAR: u16 = 2024;

/// Largest `Id` that still has 10 digits.
pub const MAX_ID: u64 = 9_999_999_999;

/// Options of [`write_files`] and [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    /// Number of files, `trade_db_1.csv` .. `trade_db_{files}.csv`.
    pub files: usize,
    /// Data rows per file (the header not counted).
    pub rows_per_file: usize,
    /// PRNG seed: the same options give byte-identical files.
    pub seed: u64,
    /// Probability that a row is malformed (see [`BadRowKind`]); default 0.001.
    pub bad_row_rate: f64,
    /// Probability that a (well-formed) row names a taxon missing from [`known_taxa`];
    /// default 0.02.
    pub unknown_taxon_rate: f64,
    /// Probability that a (well-formed) row has no `Quantity`; default 0.0005.
    pub missing_quantity_rate: f64,
    /// `Id` of the first row; the next ids follow in increasing order with random gaps of
    /// 1..=32, so ids are unique across all files. Default 1,000,000,000. The generator
    /// fails with `InvalidInput` if an id would exceed [`MAX_ID`].
    pub first_id: u64,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            files: 3,
            rows_per_file: 2_000,
            seed: 1,
            bad_row_rate: 0.001,
            unknown_taxon_rate: 0.02,
            missing_quantity_rate: 0.0005,
            first_id: 1_000_000_000,
        }
    }
}

/// The ways a generated row can be malformed. Bad rows cycle through [`BadRowKind::ALL`] in
/// this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadRowKind {
    /// `Year` is not an integer: `19x5`.
    YearNotInteger,
    /// `Year` is a valid integer out of range: `1899`.
    YearTooEarly,
    /// `Quantity` is a quoted non-number: `"abc"`.
    QuantityText,
    /// The row has 19 fields instead of 20 (`Origin` dropped).
    WrongFieldCount,
    /// `Appendix` is not one of I, II, III, N: `"IV"`.
    AppendixInvalid,
    /// `Taxon` is empty: `""`.
    EmptyTaxon,
    /// `Year` is a valid integer in the future: `2031`.
    YearTooLate,
    /// `Quantity` is an unquoted malformed number: `1.2.3`.
    QuantityMalformed,
}

impl BadRowKind {
    /// Every kind, in the order the generator cycles through them.
    pub const ALL: [BadRowKind; 8] = [
        BadRowKind::YearNotInteger,
        BadRowKind::YearTooEarly,
        BadRowKind::QuantityText,
        BadRowKind::WrongFieldCount,
        BadRowKind::AppendixInvalid,
        BadRowKind::EmptyTaxon,
        BadRowKind::YearTooLate,
        BadRowKind::QuantityMalformed,
    ];

    /// A short stable name, e.g. `year_not_integer`.
    pub fn name(self) -> &'static str {
        match self {
            BadRowKind::YearNotInteger => "year_not_integer",
            BadRowKind::YearTooEarly => "year_too_early",
            BadRowKind::QuantityText => "quantity_text",
            BadRowKind::WrongFieldCount => "wrong_field_count",
            BadRowKind::AppendixInvalid => "appendix_invalid",
            BadRowKind::EmptyTaxon => "empty_taxon",
            BadRowKind::YearTooLate => "year_too_late",
            BadRowKind::QuantityMalformed => "quantity_malformed",
        }
    }
}

/// One malformed row the generator wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// 1-based file number (`trade_db_{file}.csv`).
    pub file: usize,
    /// 1-based line number in that file (the header is line 1).
    pub line: u64,
    /// The row's `Id`.
    pub id: u64,
    /// How it is malformed.
    pub kind: BadRowKind,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenSummary {
    /// The files, in order.
    pub files: Vec<PathBuf>,
    /// Data rows written, all files together (headers not counted).
    pub rows: u64,
    /// Every malformed row, in file order.
    pub bad_rows: Vec<BadRow>,
    /// Well-formed rows whose taxon is not in [`known_taxa`].
    pub unknown_taxon_rows: u64,
    /// Well-formed rows with no `Quantity`.
    pub missing_quantity_rows: u64,
    /// Well-formed rows whose taxon is one of the 43 [`arctic_taxa`].
    pub arctic_rows: u64,
    /// Bytes written, all files together.
    pub bytes: u64,
}

impl GenSummary {
    /// Number of malformed rows of one kind.
    pub fn bad_rows_of(&self, kind: BadRowKind) -> u64 {
        self.bad_rows.iter().filter(|b| b.kind == kind).count() as u64
    }
}

/// Broad kind of a taxon; it decides the terms, units, purposes and sources of its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaxonKind {
    /// Land or sea mammal (not a cetacean).
    Mammal,
    /// Whale, dolphin or porpoise.
    Cetacean,
    /// Bird.
    Bird,
    /// Crocodilian, snake or lizard.
    Reptile,
    /// Tortoise or turtle.
    Turtle,
    /// Frog or salamander.
    Amphibian,
    /// Sturgeon or paddlefish.
    Sturgeon,
    /// Other bony fish.
    Fish,
    /// Shark or ray.
    Shark,
    /// Stony, black or blue coral.
    Coral,
    /// Other invertebrate (clams, conch, leeches, spiders, insects).
    Invertebrate,
    /// Ornamental plant (orchids, cacti, succulents, bulbs).
    Plant,
    /// Medicinal or aromatic plant.
    MedicinalPlant,
    /// Timber tree.
    Timber,
}

/// A taxon as the CITES Trade Database names and classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taxon {
    /// The `Taxon` column, e.g. `Nyctea scandiaca` or `Aloe spp.`.
    pub name: &'static str,
    /// The `Class` column (empty for plants, as in the real data).
    pub class: &'static str,
    /// The `Order` column.
    pub order: &'static str,
    /// The `Family` column (empty for taxa above family level).
    pub family: &'static str,
    /// The `Genus` column (empty for taxa above genus level).
    pub genus: &'static str,
    /// An English common name.
    pub common_name: &'static str,
    /// The appendix most of its rows carry.
    pub appendix: &'static str,
    /// What kind of organism it is.
    pub kind: TaxonKind,
    /// Relative frequency within its list.
    pub weight: u32,
}

#[allow(clippy::too_many_arguments)]
const fn t(
    name: &'static str,
    class: &'static str,
    order: &'static str,
    family: &'static str,
    genus: &'static str,
    common_name: &'static str,
    appendix: &'static str,
    kind: TaxonKind,
    weight: u32,
) -> Taxon {
    Taxon {
        name,
        class,
        order,
        family,
        genus,
        common_name,
        appendix,
        kind,
        weight,
    }
}

use TaxonKind::{
    Amphibian, Bird, Cetacean, Coral, Fish, Invertebrate, Mammal, MedicinalPlant, Plant, Reptile,
    Shark, Sturgeon, Timber, Turtle,
};

const AVES: &str = "Aves";
const MAMM: &str = "Mammalia";
const REPT: &str = "Reptilia";
const AMPH: &str = "Amphibia";
const ACTI: &str = "Actinopteri";
const ELAS: &str = "Elasmobranchii";
const ANTH: &str = "Anthozoa";

/// The 43 Arctic species under the names CITES uses, with the common names of
/// `arctic_species.csv`. Weights follow their real share of the Arctic trade.
#[rustfmt::skip]
static ARCTIC: [Taxon; 43] = [
    t("Acipenser baerii", ACTI, "Acipenseriformes", "Acipenseridae", "Acipenser", "Siberian Sturgeon", "II", Sturgeon, 400),
    t("Alopias vulpinus", ELAS, "Lamniformes", "Alopiidae", "Alopias", "Common Thresher Shark", "II", Shark, 10),
    t("Antigone canadensis", AVES, "Gruiformes", "Gruidae", "Antigone", "Sandhill Crane", "II", Bird, 8),
    t("Asio flammeus", AVES, "Strigiformes", "Strigidae", "Asio", "Short-Eared Owl", "II", Bird, 8),
    t("Balaena mysticetus", MAMM, "Cetacea", "Balaenidae", "Balaena", "Bowhead Whale", "I", Cetacean, 12),
    t("Balaenoptera acutorostrata", MAMM, "Cetacea", "Balaenopteridae", "Balaenoptera", "Minke Whale", "I", Cetacean, 10),
    t("Balaenoptera borealis", MAMM, "Cetacea", "Balaenopteridae", "Balaenoptera", "Sei Whale", "I", Cetacean, 4),
    t("Balaenoptera musculus", MAMM, "Cetacea", "Balaenopteridae", "Balaenoptera", "Blue Whale", "I", Cetacean, 4),
    t("Balaenoptera physalus", MAMM, "Cetacea", "Balaenopteridae", "Balaenoptera", "Fin Whale", "I", Cetacean, 6),
    t("Berardius bairdii", MAMM, "Cetacea", "Ziphiidae", "Berardius", "Baird\u{2019}s Beaked Whale", "I", Cetacean, 2),
    t("Branta canadensis leucopareia", AVES, "Anseriformes", "Anatidae", "Branta", "Aleutian Canada goose", "I", Bird, 6),
    t("Branta ruficollis", AVES, "Anseriformes", "Anatidae", "Branta", "Red-breasted Goose", "II", Bird, 12),
    t("Buteo lagopus", AVES, "Accipitriformes", "Accipitridae", "Buteo", "Rough-legged Buzzard", "II", Bird, 6),
    t("Cetorhinus maximus", ELAS, "Lamniformes", "Cetorhinidae", "Cetorhinus", "Basking Shark", "II", Shark, 6),
    t("Delphinapterus leucas", MAMM, "Cetacea", "Monodontidae", "Delphinapterus", "Beluga", "II", Cetacean, 15),
    t("Enhydra lutris", MAMM, "Carnivora", "Mustelidae", "Enhydra", "Sea Otter", "II", Mammal, 6),
    t("Eschrichtius robustus", MAMM, "Cetacea", "Eschrichtiidae", "Eschrichtius", "Gray whale", "I", Cetacean, 3),
    t("Eubalaena glacialis", MAMM, "Cetacea", "Balaenidae", "Eubalaena", "North Atlantic Right Whale", "I", Cetacean, 2),
    t("Eubalaena japonica", MAMM, "Cetacea", "Balaenidae", "Eubalaena", "North Pacfic Right Whale", "I", Cetacean, 1),
    t("Falco peregrinus", AVES, "Falconiformes", "Falconidae", "Falco", "Peregrine Falcon", "I", Bird, 60),
    t("Falco rusticolus", AVES, "Falconiformes", "Falconidae", "Falco", "Gyrfalcon", "I", Bird, 180),
    t("Globicephala melas", MAMM, "Cetacea", "Delphinidae", "Globicephala", "Long-finned Pilot Whale", "II", Cetacean, 6),
    t("Hyperoodon ampullatus", MAMM, "Cetacea", "Ziphiidae", "Hyperoodon", "Northern bottlenose whale", "I", Cetacean, 2),
    t("Lagenorhynchus acutus", MAMM, "Cetacea", "Delphinidae", "Lagenorhynchus", "Atlantic White-sided Dolphin", "II", Cetacean, 3),
    t("Lagenorhynchus albirostris", MAMM, "Cetacea", "Delphinidae", "Lagenorhynchus", "White-beaked Dolphin", "II", Cetacean, 3),
    t("Lamna nasus", ELAS, "Lamniformes", "Lamnidae", "Lamna", "Porbeagle Shark", "II", Shark, 8),
    t("Leucogeranus leucogeranus", AVES, "Gruiformes", "Gruidae", "Leucogeranus", "Siberian Crane", "I", Bird, 3),
    t("Lontra canadensis", MAMM, "Carnivora", "Mustelidae", "Lontra", "North American River Otter", "II", Mammal, 40),
    t("Lynx canadensis", MAMM, "Carnivora", "Felidae", "Lynx", "Canada Lynx", "II", Mammal, 80),
    t("Megaptera novaeangliae", MAMM, "Cetacea", "Balaenopteridae", "Megaptera", "Humpback Whale", "I", Cetacean, 5),
    t("Mesoplodon stejnegeri", MAMM, "Cetacea", "Ziphiidae", "Mesoplodon", "Stejneger's beaked whale", "II", Cetacean, 1),
    t("Monodon monoceros", MAMM, "Cetacea", "Monodontidae", "Monodon", "Narwhal", "II", Cetacean, 25),
    t("Numenius borealis", AVES, "Charadriiformes", "Scolopacidae", "Numenius", "Eskimo Curlew", "I", Bird, 1),
    t("Nyctea scandiaca", AVES, "Strigiformes", "Strigidae", "Nyctea", "Snowy Owl", "II", Bird, 12),
    t("Odobenus rosmarus", MAMM, "Carnivora", "Odobenidae", "Odobenus", "Walrus", "III", Mammal, 25),
    t("Orcinus orca", MAMM, "Cetacea", "Delphinidae", "Orcinus", "Killer Whale (Orca)", "II", Cetacean, 8),
    t("Phocoena phocoena", MAMM, "Cetacea", "Phocoenidae", "Phocoena", "Harbour Porppoise", "II", Cetacean, 6),
    t("Phocoenoides dalli", MAMM, "Cetacea", "Phocoenidae", "Phocoenoides", "Dall\u{b4}s Porpoise", "II", Cetacean, 3),
    t("Phoebastria albatrus", AVES, "Procellariiformes", "Diomedeidae", "Phoebastria", "Short-tailed Albatross", "I", Bird, 1),
    t("Physeter macrocephalus", MAMM, "Cetacea", "Physeteridae", "Physeter", "Sperm Whale", "I", Cetacean, 15),
    t("Rhodiola rosea", "", "Rosales", "Crassulaceae", "Rhodiola", "Roseroot", "II", MedicinalPlant, 15),
    t("Ursus maritimus", MAMM, "Carnivora", "Ursidae", "Ursus", "Polar Bear", "II", Mammal, 50),
    t("Ziphius cavirostris", MAMM, "Cetacea", "Ziphiidae", "Ziphius", "Cuvier's beaked whale", "II", Cetacean, 2),
];

/// Other real CITES-listed taxa the generator treats as known.
#[rustfmt::skip]
static OTHERS: &[Taxon] = &[
    // Sturgeons and paddlefish
    t("Acipenser gueldenstaedtii", ACTI, "Acipenseriformes", "Acipenseridae", "Acipenser", "Russian sturgeon", "II", Sturgeon, 40),
    t("Acipenser transmontanus", ACTI, "Acipenseriformes", "Acipenseridae", "Acipenser", "White sturgeon", "II", Sturgeon, 30),
    t("Acipenser ruthenus", ACTI, "Acipenseriformes", "Acipenseridae", "Acipenser", "Sterlet", "II", Sturgeon, 15),
    t("Acipenser stellatus", ACTI, "Acipenseriformes", "Acipenseridae", "Acipenser", "Stellate sturgeon", "II", Sturgeon, 10),
    t("Acipenser schrenckii", ACTI, "Acipenseriformes", "Acipenseridae", "Acipenser", "Amur sturgeon", "II", Sturgeon, 15),
    t("Acipenser naccarii", ACTI, "Acipenseriformes", "Acipenseridae", "Acipenser", "Adriatic sturgeon", "II", Sturgeon, 5),
    t("Acipenser fulvescens", ACTI, "Acipenseriformes", "Acipenseridae", "Acipenser", "Lake sturgeon", "II", Sturgeon, 4),
    t("Acipenser oxyrinchus", ACTI, "Acipenseriformes", "Acipenseridae", "Acipenser", "Atlantic sturgeon", "II", Sturgeon, 3),
    t("Acipenser sturio", ACTI, "Acipenseriformes", "Acipenseridae", "Acipenser", "Common sturgeon", "I", Sturgeon, 1),
    t("Huso huso", ACTI, "Acipenseriformes", "Acipenseridae", "Huso", "Beluga sturgeon", "II", Sturgeon, 20),
    t("Huso dauricus", ACTI, "Acipenseriformes", "Acipenseridae", "Huso", "Kaluga", "II", Sturgeon, 10),
    t("Polyodon spathula", ACTI, "Acipenseriformes", "Polyodontidae", "Polyodon", "American paddlefish", "II", Sturgeon, 8),
    t("Acipenseriformes spp.", ACTI, "Acipenseriformes", "", "", "Sturgeons and paddlefishes", "II", Sturgeon, 4),
    // Other fish
    t("Arapaima gigas", ACTI, "Osteoglossiformes", "Arapaimidae", "Arapaima", "Arapaima", "II", Fish, 8),
    t("Scleropages formosus", ACTI, "Osteoglossiformes", "Osteoglossidae", "Scleropages", "Asian arowana", "I", Fish, 15),
    t("Hippocampus kuda", ACTI, "Syngnathiformes", "Syngnathidae", "Hippocampus", "Spotted seahorse", "II", Fish, 10),
    t("Hippocampus spp.", ACTI, "Syngnathiformes", "Syngnathidae", "Hippocampus", "Seahorses", "II", Fish, 6),
    t("Cheilinus undulatus", ACTI, "Perciformes", "Labridae", "Cheilinus", "Humphead wrasse", "II", Fish, 6),
    t("Anguilla anguilla", ACTI, "Anguilliformes", "Anguillidae", "Anguilla", "European eel", "II", Fish, 10),
    t("Totoaba macdonaldi", ACTI, "Perciformes", "Sciaenidae", "Totoaba", "Totoaba", "I", Fish, 1),
    // Sharks and rays
    t("Carcharodon carcharias", ELAS, "Lamniformes", "Lamnidae", "Carcharodon", "Great white shark", "II", Shark, 4),
    t("Isurus oxyrinchus", ELAS, "Lamniformes", "Lamnidae", "Isurus", "Shortfin mako", "II", Shark, 4),
    t("Sphyrna lewini", ELAS, "Carcharhiniformes", "Sphyrnidae", "Sphyrna", "Scalloped hammerhead", "II", Shark, 5),
    t("Carcharhinus falciformis", ELAS, "Carcharhiniformes", "Carcharhinidae", "Carcharhinus", "Silky shark", "II", Shark, 5),
    t("Carcharhinus longimanus", ELAS, "Carcharhiniformes", "Carcharhinidae", "Carcharhinus", "Oceanic whitetip shark", "II", Shark, 3),
    t("Rhincodon typus", ELAS, "Orectolobiformes", "Rhincodontidae", "Rhincodon", "Whale shark", "II", Shark, 2),
    t("Mobula birostris", ELAS, "Rajiformes", "Mobulidae", "Mobula", "Giant manta ray", "II", Shark, 2),
    t("Pristis pristis", ELAS, "Rhinopristiformes", "Pristidae", "Pristis", "Largetooth sawfish", "I", Shark, 1),
    // Mammals
    t("Panthera leo", MAMM, "Carnivora", "Felidae", "Panthera", "Lion", "II", Mammal, 40),
    t("Panthera tigris", MAMM, "Carnivora", "Felidae", "Panthera", "Tiger", "I", Mammal, 15),
    t("Panthera pardus", MAMM, "Carnivora", "Felidae", "Panthera", "Leopard", "I", Mammal, 30),
    t("Panthera onca", MAMM, "Carnivora", "Felidae", "Panthera", "Jaguar", "I", Mammal, 5),
    t("Panthera uncia", MAMM, "Carnivora", "Felidae", "Panthera", "Snow leopard", "I", Mammal, 3),
    t("Acinonyx jubatus", MAMM, "Carnivora", "Felidae", "Acinonyx", "Cheetah", "I", Mammal, 12),
    t("Leopardus pardalis", MAMM, "Carnivora", "Felidae", "Leopardus", "Ocelot", "I", Mammal, 4),
    t("Lynx lynx", MAMM, "Carnivora", "Felidae", "Lynx", "Eurasian lynx", "II", Mammal, 15),
    t("Lynx rufus", MAMM, "Carnivora", "Felidae", "Lynx", "Bobcat", "II", Mammal, 40),
    t("Caracal caracal", MAMM, "Carnivora", "Felidae", "Caracal", "Caracal", "II", Mammal, 8),
    t("Felis silvestris", MAMM, "Carnivora", "Felidae", "Felis", "Wild cat", "II", Mammal, 6),
    t("Puma concolor", MAMM, "Carnivora", "Felidae", "Puma", "Puma", "II", Mammal, 8),
    t("Felidae spp.", MAMM, "Carnivora", "Felidae", "", "Cats", "II", Mammal, 3),
    t("Loxodonta africana", MAMM, "Proboscidea", "Elephantidae", "Loxodonta", "African elephant", "I", Mammal, 45),
    t("Elephas maximus", MAMM, "Proboscidea", "Elephantidae", "Elephas", "Asian elephant", "I", Mammal, 10),
    t("Ceratotherium simum simum", MAMM, "Perissodactyla", "Rhinocerotidae", "Ceratotherium", "Southern white rhinoceros", "II", Mammal, 6),
    t("Diceros bicornis", MAMM, "Perissodactyla", "Rhinocerotidae", "Diceros", "Black rhinoceros", "I", Mammal, 3),
    t("Equus zebra hartmannae", MAMM, "Perissodactyla", "Equidae", "Equus", "Hartmann's mountain zebra", "II", Mammal, 12),
    t("Hippopotamus amphibius", MAMM, "Artiodactyla", "Hippopotamidae", "Hippopotamus", "Hippopotamus", "II", Mammal, 15),
    t("Ursus arctos", MAMM, "Carnivora", "Ursidae", "Ursus", "Brown bear", "II", Mammal, 25),
    t("Ursus americanus", MAMM, "Carnivora", "Ursidae", "Ursus", "American black bear", "II", Mammal, 30),
    t("Ursus thibetanus", MAMM, "Carnivora", "Ursidae", "Ursus", "Asiatic black bear", "I", Mammal, 5),
    t("Canis lupus", MAMM, "Carnivora", "Canidae", "Canis", "Grey wolf", "II", Mammal, 20),
    t("Lutra lutra", MAMM, "Carnivora", "Mustelidae", "Lutra", "Eurasian otter", "I", Mammal, 3),
    t("Arctocephalus pusillus", MAMM, "Carnivora", "Otariidae", "Arctocephalus", "Brown fur seal", "II", Mammal, 8),
    t("Macaca fascicularis", MAMM, "Primates", "Cercopithecidae", "Macaca", "Long-tailed macaque", "II", Mammal, 50),
    t("Macaca mulatta", MAMM, "Primates", "Cercopithecidae", "Macaca", "Rhesus macaque", "II", Mammal, 25),
    t("Chlorocebus sabaeus", MAMM, "Primates", "Cercopithecidae", "Chlorocebus", "Green monkey", "II", Mammal, 8),
    t("Papio anubis", MAMM, "Primates", "Cercopithecidae", "Papio", "Olive baboon", "II", Mammal, 6),
    t("Callithrix jacchus", MAMM, "Primates", "Callitrichidae", "Callithrix", "Common marmoset", "II", Mammal, 6),
    t("Pan troglodytes", MAMM, "Primates", "Hominidae", "Pan", "Chimpanzee", "I", Mammal, 8),
    t("Pongo pygmaeus", MAMM, "Primates", "Hominidae", "Pongo", "Bornean orangutan", "I", Mammal, 4),
    t("Gorilla gorilla", MAMM, "Primates", "Hominidae", "Gorilla", "Western gorilla", "I", Mammal, 3),
    t("Lemur catta", MAMM, "Primates", "Lemuridae", "Lemur", "Ring-tailed lemur", "I", Mammal, 4),
    t("Primates spp.", MAMM, "Primates", "", "", "Primates", "II", Mammal, 3),
    t("Manis pentadactyla", MAMM, "Pholidota", "Manidae", "Manis", "Chinese pangolin", "I", Mammal, 3),
    t("Manis javanica", MAMM, "Pholidota", "Manidae", "Manis", "Sunda pangolin", "I", Mammal, 4),
    t("Smutsia temminckii", MAMM, "Pholidota", "Manidae", "Smutsia", "Ground pangolin", "I", Mammal, 2),
    t("Vicugna vicugna", MAMM, "Artiodactyla", "Camelidae", "Vicugna", "Vicuna", "II", Mammal, 15),
    t("Lama guanicoe", MAMM, "Artiodactyla", "Camelidae", "Lama", "Guanaco", "II", Mammal, 6),
    t("Ovis ammon", MAMM, "Artiodactyla", "Bovidae", "Ovis", "Argali", "II", Mammal, 6),
    t("Capra falconeri", MAMM, "Artiodactyla", "Bovidae", "Capra", "Markhor", "I", Mammal, 2),
    t("Ammotragus lervia", MAMM, "Artiodactyla", "Bovidae", "Ammotragus", "Barbary sheep", "II", Mammal, 4),
    t("Saiga tatarica", MAMM, "Artiodactyla", "Bovidae", "Saiga", "Saiga antelope", "II", Mammal, 4),
    t("Moschus moschiferus", MAMM, "Artiodactyla", "Moschidae", "Moschus", "Siberian musk deer", "II", Mammal, 4),
    t("Pecari tajacu", MAMM, "Artiodactyla", "Tayassuidae", "Pecari", "Collared peccary", "II", Mammal, 10),
    t("Tayassu pecari", MAMM, "Artiodactyla", "Tayassuidae", "Tayassu", "White-lipped peccary", "II", Mammal, 5),
    t("Tursiops truncatus", MAMM, "Cetacea", "Delphinidae", "Tursiops", "Common bottlenose dolphin", "II", Cetacean, 10),
    t("Dugong dugon", MAMM, "Sirenia", "Dugongidae", "Dugong", "Dugong", "I", Mammal, 2),
    t("Trichechus manatus", MAMM, "Sirenia", "Trichechidae", "Trichechus", "West Indian manatee", "I", Mammal, 2),
    // Birds
    t("Psittacus erithacus", AVES, "Psittaciformes", "Psittacidae", "Psittacus", "Grey parrot", "I", Bird, 40),
    t("Ara ararauna", AVES, "Psittaciformes", "Psittacidae", "Ara", "Blue-and-yellow macaw", "II", Bird, 20),
    t("Ara macao", AVES, "Psittaciformes", "Psittacidae", "Ara", "Scarlet macaw", "I", Bird, 10),
    t("Anodorhynchus hyacinthinus", AVES, "Psittaciformes", "Psittacidae", "Anodorhynchus", "Hyacinth macaw", "I", Bird, 4),
    t("Amazona aestiva", AVES, "Psittaciformes", "Psittacidae", "Amazona", "Turquoise-fronted amazon", "II", Bird, 15),
    t("Cacatua galerita", AVES, "Psittaciformes", "Cacatuidae", "Cacatua", "Sulphur-crested cockatoo", "II", Bird, 10),
    t("Eclectus roratus", AVES, "Psittaciformes", "Psittacidae", "Eclectus", "Eclectus parrot", "II", Bird, 8),
    t("Agapornis fischeri", AVES, "Psittaciformes", "Psittacidae", "Agapornis", "Fischer's lovebird", "II", Bird, 20),
    t("Poicephalus senegalus", AVES, "Psittaciformes", "Psittacidae", "Poicephalus", "Senegal parrot", "II", Bird, 15),
    t("Psittaciformes spp.", AVES, "Psittaciformes", "", "", "Parrots", "II", Bird, 4),
    t("Falco cherrug", AVES, "Falconiformes", "Falconidae", "Falco", "Saker falcon", "II", Bird, 30),
    t("Falco biarmicus", AVES, "Falconiformes", "Falconidae", "Falco", "Lanner falcon", "II", Bird, 6),
    t("Aquila chrysaetos", AVES, "Accipitriformes", "Accipitridae", "Aquila", "Golden eagle", "II", Bird, 8),
    t("Haliaeetus albicilla", AVES, "Accipitriformes", "Accipitridae", "Haliaeetus", "White-tailed eagle", "I", Bird, 4),
    t("Gyps fulvus", AVES, "Accipitriformes", "Accipitridae", "Gyps", "Griffon vulture", "II", Bird, 3),
    t("Bubo bubo", AVES, "Strigiformes", "Strigidae", "Bubo", "Eurasian eagle-owl", "II", Bird, 10),
    t("Athene noctua", AVES, "Strigiformes", "Strigidae", "Athene", "Little owl", "II", Bird, 5),
    t("Tyto alba", AVES, "Strigiformes", "Tytonidae", "Tyto", "Barn owl", "II", Bird, 8),
    t("Buceros rhinoceros", AVES, "Bucerotiformes", "Bucerotidae", "Buceros", "Rhinoceros hornbill", "II", Bird, 2),
    t("Rhinoplax vigil", AVES, "Bucerotiformes", "Bucerotidae", "Rhinoplax", "Helmeted hornbill", "I", Bird, 1),
    t("Ramphastos toco", AVES, "Piciformes", "Ramphastidae", "Ramphastos", "Toco toucan", "II", Bird, 4),
    t("Pavo muticus", AVES, "Galliformes", "Phasianidae", "Pavo", "Green peafowl", "II", Bird, 3),
    t("Phoenicopterus roseus", AVES, "Phoenicopteriformes", "Phoenicopteridae", "Phoenicopterus", "Greater flamingo", "II", Bird, 4),
    t("Balearica regulorum", AVES, "Gruiformes", "Gruidae", "Balearica", "Grey crowned crane", "II", Bird, 4),
    t("Grus grus", AVES, "Gruiformes", "Gruidae", "Grus", "Common crane", "II", Bird, 3),
    t("Ciconia nigra", AVES, "Ciconiiformes", "Ciconiidae", "Ciconia", "Black stork", "II", Bird, 2),
    t("Gracula religiosa", AVES, "Passeriformes", "Sturnidae", "Gracula", "Common hill myna", "II", Bird, 5),
    t("Leiothrix lutea", AVES, "Passeriformes", "Leiothrichidae", "Leiothrix", "Red-billed leiothrix", "II", Bird, 3),
    t("Spheniscus demersus", AVES, "Sphenisciformes", "Spheniscidae", "Spheniscus", "African penguin", "II", Bird, 2),
    t("Struthio camelus", AVES, "Struthioniformes", "Struthionidae", "Struthio", "Ostrich", "I", Bird, 12),
    // Reptiles
    t("Crocodylus niloticus", REPT, "Crocodylia", "Crocodylidae", "Crocodylus", "Nile crocodile", "II", Reptile, 50),
    t("Crocodylus porosus", REPT, "Crocodylia", "Crocodylidae", "Crocodylus", "Saltwater crocodile", "II", Reptile, 35),
    t("Crocodylus siamensis", REPT, "Crocodylia", "Crocodylidae", "Crocodylus", "Siamese crocodile", "I", Reptile, 15),
    t("Crocodylus novaeguineae", REPT, "Crocodylia", "Crocodylidae", "Crocodylus", "New Guinea crocodile", "II", Reptile, 8),
    t("Crocodylus moreletii", REPT, "Crocodylia", "Crocodylidae", "Crocodylus", "Morelet's crocodile", "II", Reptile, 4),
    t("Alligator mississippiensis", REPT, "Crocodylia", "Alligatoridae", "Alligator", "American alligator", "II", Reptile, 70),
    t("Caiman crocodilus fuscus", REPT, "Crocodylia", "Alligatoridae", "Caiman", "Brown caiman", "II", Reptile, 35),
    t("Caiman crocodilus", REPT, "Crocodylia", "Alligatoridae", "Caiman", "Spectacled caiman", "II", Reptile, 15),
    t("Caiman yacare", REPT, "Crocodylia", "Alligatoridae", "Caiman", "Yacare caiman", "II", Reptile, 10),
    t("Caiman latirostris", REPT, "Crocodylia", "Alligatoridae", "Caiman", "Broad-snouted caiman", "I", Reptile, 4),
    t("Python reticulatus", REPT, "Serpentes", "Pythonidae", "Python", "Reticulated python", "II", Reptile, 50),
    t("Python bivittatus", REPT, "Serpentes", "Pythonidae", "Python", "Burmese python", "II", Reptile, 15),
    t("Python regius", REPT, "Serpentes", "Pythonidae", "Python", "Ball python", "II", Reptile, 35),
    t("Python brongersmai", REPT, "Serpentes", "Pythonidae", "Python", "Blood python", "II", Reptile, 10),
    t("Morelia viridis", REPT, "Serpentes", "Pythonidae", "Morelia", "Green tree python", "II", Reptile, 6),
    t("Boa constrictor", REPT, "Serpentes", "Boidae", "Boa", "Boa constrictor", "II", Reptile, 15),
    t("Eunectes murinus", REPT, "Serpentes", "Boidae", "Eunectes", "Green anaconda", "II", Reptile, 4),
    t("Ptyas mucosa", REPT, "Serpentes", "Colubridae", "Ptyas", "Oriental ratsnake", "II", Reptile, 6),
    t("Naja sputatrix", REPT, "Serpentes", "Elapidae", "Naja", "Javan spitting cobra", "II", Reptile, 5),
    t("Varanus salvator", REPT, "Sauria", "Varanidae", "Varanus", "Water monitor", "II", Reptile, 35),
    t("Varanus niloticus", REPT, "Sauria", "Varanidae", "Varanus", "Nile monitor", "II", Reptile, 15),
    t("Varanus exanthematicus", REPT, "Sauria", "Varanidae", "Varanus", "Savannah monitor", "II", Reptile, 10),
    t("Salvator merianae", REPT, "Sauria", "Teiidae", "Salvator", "Argentine black and white tegu", "II", Reptile, 15),
    t("Iguana iguana", REPT, "Sauria", "Iguanidae", "Iguana", "Green iguana", "II", Reptile, 20),
    t("Chamaeleo calyptratus", REPT, "Sauria", "Chamaeleonidae", "Chamaeleo", "Veiled chameleon", "II", Reptile, 8),
    t("Furcifer pardalis", REPT, "Sauria", "Chamaeleonidae", "Furcifer", "Panther chameleon", "II", Reptile, 8),
    t("Gekko gecko", REPT, "Sauria", "Gekkonidae", "Gekko", "Tokay gecko", "II", Reptile, 8),
    t("Testudo hermanni", REPT, "Testudines", "Testudinidae", "Testudo", "Hermann's tortoise", "II", Turtle, 15),
    t("Testudo graeca", REPT, "Testudines", "Testudinidae", "Testudo", "Spur-thighed tortoise", "II", Turtle, 10),
    t("Testudo horsfieldii", REPT, "Testudines", "Testudinidae", "Testudo", "Russian tortoise", "II", Turtle, 10),
    t("Centrochelys sulcata", REPT, "Testudines", "Testudinidae", "Centrochelys", "African spurred tortoise", "II", Turtle, 8),
    t("Stigmochelys pardalis", REPT, "Testudines", "Testudinidae", "Stigmochelys", "Leopard tortoise", "II", Turtle, 6),
    t("Chelonoidis carbonarius", REPT, "Testudines", "Testudinidae", "Chelonoidis", "Red-footed tortoise", "II", Turtle, 6),
    t("Astrochelys radiata", REPT, "Testudines", "Testudinidae", "Astrochelys", "Radiated tortoise", "I", Turtle, 2),
    t("Cuora amboinensis", REPT, "Testudines", "Geoemydidae", "Cuora", "Southeast Asian box turtle", "II", Turtle, 5),
    t("Chelonia mydas", REPT, "Testudines", "Cheloniidae", "Chelonia", "Green turtle", "I", Turtle, 5),
    t("Eretmochelys imbricata", REPT, "Testudines", "Cheloniidae", "Eretmochelys", "Hawksbill turtle", "I", Turtle, 6),
    // Amphibians
    t("Dendrobates tinctorius", AMPH, "Anura", "Dendrobatidae", "Dendrobates", "Dyeing poison frog", "II", Amphibian, 5),
    t("Dendrobates auratus", AMPH, "Anura", "Dendrobatidae", "Dendrobates", "Green and black poison frog", "II", Amphibian, 4),
    t("Mantella aurantiaca", AMPH, "Anura", "Mantellidae", "Mantella", "Golden mantella", "II", Amphibian, 3),
    t("Agalychnis callidryas", AMPH, "Anura", "Phyllomedusidae", "Agalychnis", "Red-eyed tree frog", "II", Amphibian, 4),
    t("Ambystoma mexicanum", AMPH, "Caudata", "Ambystomatidae", "Ambystoma", "Axolotl", "II", Amphibian, 3),
    t("Telmatobius culeus", AMPH, "Anura", "Telmatobiidae", "Telmatobius", "Titicaca water frog", "I", Amphibian, 1),
    // Corals
    t("Scleractinia spp.", ANTH, "Scleractinia", "", "", "Stony corals", "II", Coral, 25),
    t("Acropora spp.", ANTH, "Scleractinia", "Acroporidae", "Acropora", "Staghorn corals", "II", Coral, 20),
    t("Euphyllia glabrescens", ANTH, "Scleractinia", "Euphylliidae", "Euphyllia", "Torch coral", "II", Coral, 8),
    t("Goniopora spp.", ANTH, "Scleractinia", "Poritidae", "Goniopora", "Flowerpot corals", "II", Coral, 6),
    t("Porites spp.", ANTH, "Scleractinia", "Poritidae", "Porites", "Finger corals", "II", Coral, 6),
    t("Heliofungia actiniformis", ANTH, "Scleractinia", "Fungiidae", "Heliofungia", "Long tentacle plate coral", "II", Coral, 4),
    t("Tubipora musica", ANTH, "Stolonifera", "Tubiporidae", "Tubipora", "Organ pipe coral", "II", Coral, 3),
    t("Heliopora coerulea", ANTH, "Helioporacea", "Helioporidae", "Heliopora", "Blue coral", "II", Coral, 3),
    t("Antipatharia spp.", ANTH, "Antipatharia", "", "", "Black corals", "II", Coral, 3),
    t("Millepora spp.", "Hydrozoa", "Milleporina", "Milleporidae", "Millepora", "Fire corals", "II", Coral, 3),
    // Other invertebrates
    t("Tridacna maxima", "Bivalvia", "Veneroida", "Tridacnidae", "Tridacna", "Small giant clam", "II", Invertebrate, 10),
    t("Tridacna gigas", "Bivalvia", "Veneroida", "Tridacnidae", "Tridacna", "Giant clam", "II", Invertebrate, 5),
    t("Tridacna derasa", "Bivalvia", "Veneroida", "Tridacnidae", "Tridacna", "Southern giant clam", "II", Invertebrate, 5),
    t("Strombus gigas", "Gastropoda", "Mesogastropoda", "Strombidae", "Strombus", "Queen conch", "II", Invertebrate, 15),
    t("Hirudo medicinalis", "Hirudinoidea", "Arhynchobdellida", "Hirudinidae", "Hirudo", "Medicinal leech", "II", Invertebrate, 4),
    t("Brachypelma smithi", "Arachnida", "Araneae", "Theraphosidae", "Brachypelma", "Mexican redknee tarantula", "II", Invertebrate, 4),
    t("Pandinus imperator", "Arachnida", "Scorpiones", "Scorpionidae", "Pandinus", "Emperor scorpion", "II", Invertebrate, 5),
    t("Ornithoptera priamus", "Insecta", "Lepidoptera", "Papilionidae", "Ornithoptera", "Common green birdwing", "II", Invertebrate, 5),
    t("Dynastes satanas", "Insecta", "Coleoptera", "Scarabaeidae", "Dynastes", "Satanas beetle", "II", Invertebrate, 1),
    // Ornamental plants (the trade database leaves Class empty for plants)
    t("Orchidaceae spp.", "", "Orchidales", "Orchidaceae", "", "Orchids", "II", Plant, 30),
    t("Acampe praemorsa", "", "Orchidales", "Orchidaceae", "Acampe", "Acampe orchid", "II", Plant, 3),
    t("Dendrobium nobile", "", "Orchidales", "Orchidaceae", "Dendrobium", "Noble dendrobium", "II", Plant, 15),
    t("Dendrobium spp.", "", "Orchidales", "Orchidaceae", "Dendrobium", "Dendrobium orchids", "II", Plant, 25),
    t("Phalaenopsis spp.", "", "Orchidales", "Orchidaceae", "Phalaenopsis", "Moth orchids", "II", Plant, 30),
    t("Cymbidium spp.", "", "Orchidales", "Orchidaceae", "Cymbidium", "Boat orchids", "II", Plant, 15),
    t("Cattleya spp.", "", "Orchidales", "Orchidaceae", "Cattleya", "Cattleya orchids", "II", Plant, 8),
    t("Oncidium spp.", "", "Orchidales", "Orchidaceae", "Oncidium", "Dancing-lady orchids", "II", Plant, 6),
    t("Vanda spp.", "", "Orchidales", "Orchidaceae", "Vanda", "Vanda orchids", "II", Plant, 6),
    t("Paphiopedilum spp.", "", "Orchidales", "Orchidaceae", "Paphiopedilum", "Slipper orchids", "I", Plant, 8),
    t("Paphiopedilum rothschildianum", "", "Orchidales", "Orchidaceae", "Paphiopedilum", "Rothschild's slipper orchid", "I", Plant, 2),
    t("Cactaceae spp.", "", "Caryophyllales", "Cactaceae", "", "Cacti", "II", Plant, 25),
    t("Mammillaria spp.", "", "Caryophyllales", "Cactaceae", "Mammillaria", "Pincushion cacti", "II", Plant, 8),
    t("Opuntia spp.", "", "Caryophyllales", "Cactaceae", "Opuntia", "Prickly pears", "II", Plant, 5),
    t("Echinocactus grusonii", "", "Caryophyllales", "Cactaceae", "Echinocactus", "Golden barrel cactus", "I", Plant, 4),
    t("Ariocarpus kotschoubeyanus", "", "Caryophyllales", "Cactaceae", "Ariocarpus", "Living rock cactus", "I", Plant, 2),
    t("Astrophytum asterias", "", "Caryophyllales", "Cactaceae", "Astrophytum", "Star cactus", "I", Plant, 2),
    t("Aloe spp.", "", "Liliales", "Liliaceae", "Aloe", "Aloes", "II", Plant, 10),
    t("Aloe ferox", "", "Liliales", "Liliaceae", "Aloe", "Cape aloe", "II", MedicinalPlant, 20),
    t("Euphorbia spp.", "", "Euphorbiales", "Euphorbiaceae", "Euphorbia", "Spurges", "II", Plant, 12),
    t("Euphorbia antisyphilitica", "", "Euphorbiales", "Euphorbiaceae", "Euphorbia", "Candelilla", "II", MedicinalPlant, 6),
    t("Cyclamen spp.", "", "Primulales", "Primulaceae", "Cyclamen", "Cyclamens", "II", Plant, 6),
    t("Cyclamen hederifolium", "", "Primulales", "Primulaceae", "Cyclamen", "Ivy-leaved cyclamen", "II", Plant, 6),
    t("Galanthus nivalis", "", "Liliales", "Amaryllidaceae", "Galanthus", "Common snowdrop", "II", Plant, 10),
    t("Galanthus woronowii", "", "Liliales", "Amaryllidaceae", "Galanthus", "Green snowdrop", "II", Plant, 8),
    t("Galanthus elwesii", "", "Liliales", "Amaryllidaceae", "Galanthus", "Giant snowdrop", "II", Plant, 6),
    t("Cycas revoluta", "", "Cycadales", "Cycadaceae", "Cycas", "Sago palm", "II", Plant, 10),
    t("Encephalartos spp.", "", "Cycadales", "Zamiaceae", "Encephalartos", "Bread palms", "I", Plant, 3),
    t("Cyathea spp.", "", "Filicales", "Cyatheaceae", "Cyathea", "Tree ferns", "II", Plant, 5),
    t("Cibotium barometz", "", "Filicales", "Dicksoniaceae", "Cibotium", "Golden chicken fern", "II", MedicinalPlant, 3),
    t("Dionaea muscipula", "", "Nepenthales", "Droseraceae", "Dionaea", "Venus flytrap", "II", Plant, 4),
    t("Nepenthes spp.", "", "Nepenthales", "Nepenthaceae", "Nepenthes", "Tropical pitcher plants", "II", Plant, 4),
    t("Sarracenia spp.", "", "Nepenthales", "Sarraceniaceae", "Sarracenia", "Trumpet pitchers", "II", Plant, 3),
    t("Tillandsia xerographica", "", "Bromeliales", "Bromeliaceae", "Tillandsia", "Xerographica air plant", "II", Plant, 6),
    t("Pachypodium lamerei", "", "Gentianales", "Apocynaceae", "Pachypodium", "Madagascar palm", "II", Plant, 4),
    // Medicinal and aromatic plants
    t("Prunus africana", "", "Rosales", "Rosaceae", "Prunus", "African cherry", "II", MedicinalPlant, 12),
    t("Panax quinquefolius", "", "Apiales", "Araliaceae", "Panax", "American ginseng", "II", MedicinalPlant, 15),
    t("Panax ginseng", "", "Apiales", "Araliaceae", "Panax", "Ginseng", "II", MedicinalPlant, 5),
    t("Hoodia gordonii", "", "Gentianales", "Asclepiadaceae", "Hoodia", "Hoodia", "II", MedicinalPlant, 4),
    t("Nardostachys grandiflora", "", "Dipsacales", "Valerianaceae", "Nardostachys", "Spikenard", "II", MedicinalPlant, 3),
    t("Saussurea costus", "", "Asterales", "Compositae", "Saussurea", "Costus", "I", MedicinalPlant, 3),
    t("Podophyllum hexandrum", "", "Ranunculales", "Berberidaceae", "Podophyllum", "Himalayan mayapple", "II", MedicinalPlant, 3),
    t("Rauvolfia serpentina", "", "Gentianales", "Apocynaceae", "Rauvolfia", "Indian snakeroot", "II", MedicinalPlant, 3),
    t("Taxus wallichiana", "", "Taxales", "Taxaceae", "Taxus", "Himalayan yew", "II", MedicinalPlant, 4),
    t("Taxus chinensis", "", "Taxales", "Taxaceae", "Taxus", "Chinese yew", "II", MedicinalPlant, 5),
    t("Gastrodia elata", "", "Orchidales", "Orchidaceae", "Gastrodia", "Tian ma", "II", MedicinalPlant, 4),
    t("Bletilla striata", "", "Orchidales", "Orchidaceae", "Bletilla", "Hyacinth orchid", "II", MedicinalPlant, 4),
    t("Aquilaria malaccensis", "", "Myrtales", "Thymelaeaceae", "Aquilaria", "Agarwood", "II", MedicinalPlant, 15),
    t("Aquilaria crassna", "", "Myrtales", "Thymelaeaceae", "Aquilaria", "Eaglewood", "II", MedicinalPlant, 6),
    t("Aniba rosaeodora", "", "Laurales", "Lauraceae", "Aniba", "Brazilian rosewood", "II", MedicinalPlant, 3),
    t("Osyris lanceolata", "", "Santalales", "Santalaceae", "Osyris", "East African sandalwood", "II", MedicinalPlant, 2),
    // Timber
    t("Pericopsis elata", "", "Fabales", "Leguminosae", "Pericopsis", "Afrormosia", "II", Timber, 10),
    t("Dalbergia nigra", "", "Fabales", "Leguminosae", "Dalbergia", "Brazilian rosewood", "I", Timber, 4),
    t("Dalbergia latifolia", "", "Fabales", "Leguminosae", "Dalbergia", "Indian rosewood", "II", Timber, 10),
    t("Dalbergia retusa", "", "Fabales", "Leguminosae", "Dalbergia", "Cocobolo", "II", Timber, 6),
    t("Dalbergia cochinchinensis", "", "Fabales", "Leguminosae", "Dalbergia", "Siamese rosewood", "II", Timber, 5),
    t("Dalbergia spp.", "", "Fabales", "Leguminosae", "Dalbergia", "Rosewoods", "II", Timber, 8),
    t("Pterocarpus erinaceus", "", "Fabales", "Leguminosae", "Pterocarpus", "African rosewood", "II", Timber, 6),
    t("Pterocarpus santalinus", "", "Fabales", "Leguminosae", "Pterocarpus", "Red sanders", "II", Timber, 4),
    t("Swietenia macrophylla", "", "Sapindales", "Meliaceae", "Swietenia", "Big-leaf mahogany", "II", Timber, 10),
    t("Cedrela odorata", "", "Sapindales", "Meliaceae", "Cedrela", "Spanish cedar", "II", Timber, 6),
    t("Guaiacum sanctum", "", "Sapindales", "Zygophyllaceae", "Guaiacum", "Holywood lignum-vitae", "II", Timber, 3),
    t("Bulnesia sarmientoi", "", "Sapindales", "Zygophyllaceae", "Bulnesia", "Palo santo", "II", Timber, 4),
    t("Gonystylus spp.", "", "Myrtales", "Thymelaeaceae", "Gonystylus", "Ramin", "II", Timber, 4),
    t("Diospyros spp.", "", "Ebenales", "Ebenaceae", "Diospyros", "Ebonies", "II", Timber, 3),
];

/// Real CITES taxa that are deliberately **absent** from [`known_taxa`]: the generator uses
/// them for its "unknown taxon" rows. None is a synonym of a known taxon.
#[rustfmt::skip]
static UNKNOWN: &[Taxon] = &[
    t("Ara chloropterus", AVES, "Psittaciformes", "Psittacidae", "Ara", "Red-and-green macaw", "II", Bird, 1),
    t("Amazona oratrix", AVES, "Psittaciformes", "Psittacidae", "Amazona", "Yellow-headed amazon", "I", Bird, 1),
    t("Cacatua sulphurea", AVES, "Psittaciformes", "Cacatuidae", "Cacatua", "Yellow-crested cockatoo", "I", Bird, 1),
    t("Probosciger aterrimus", AVES, "Psittaciformes", "Cacatuidae", "Probosciger", "Palm cockatoo", "I", Bird, 1),
    t("Pionus menstruus", AVES, "Psittaciformes", "Psittacidae", "Pionus", "Blue-headed parrot", "II", Bird, 1),
    t("Tauraco persa", AVES, "Musophagiformes", "Musophagidae", "Tauraco", "Guinea turaco", "II", Bird, 1),
    t("Falco hybrid", AVES, "Falconiformes", "Falconidae", "Falco", "Hybrid falcon", "II", Bird, 2),
    t("Trioceros jacksonii", REPT, "Sauria", "Chamaeleonidae", "Trioceros", "Jackson's chameleon", "II", Reptile, 1),
    t("Python molurus", REPT, "Serpentes", "Pythonidae", "Python", "Indian python", "I", Reptile, 1),
    t("Corallus caninus", REPT, "Serpentes", "Boidae", "Corallus", "Emerald tree boa", "II", Reptile, 1),
    t("Varanus komodoensis", REPT, "Sauria", "Varanidae", "Varanus", "Komodo dragon", "I", Reptile, 1),
    t("Heloderma suspectum", REPT, "Sauria", "Helodermatidae", "Heloderma", "Gila monster", "II", Reptile, 1),
    t("Kinixys belliana", REPT, "Testudines", "Testudinidae", "Kinixys", "Bell's hinge-back tortoise", "II", Turtle, 1),
    t("Crocodylus acutus", REPT, "Crocodylia", "Crocodylidae", "Crocodylus", "American crocodile", "I", Reptile, 1),
    t("Melanosuchus niger", REPT, "Crocodylia", "Alligatoridae", "Melanosuchus", "Black caiman", "II", Reptile, 1),
    t("Hippocampus erectus", ACTI, "Syngnathiformes", "Syngnathidae", "Hippocampus", "Lined seahorse", "II", Fish, 1),
    t("Hylobates lar", MAMM, "Primates", "Hylobatidae", "Hylobates", "Lar gibbon", "I", Mammal, 1),
    t("Nycticebus coucang", MAMM, "Primates", "Lorisidae", "Nycticebus", "Sunda slow loris", "I", Mammal, 1),
    t("Ailurus fulgens", MAMM, "Carnivora", "Ailuridae", "Ailurus", "Red panda", "I", Mammal, 1),
    t("Prionailurus bengalensis", MAMM, "Carnivora", "Felidae", "Prionailurus", "Leopard cat", "II", Mammal, 1),
    t("Leptailurus serval", MAMM, "Carnivora", "Felidae", "Leptailurus", "Serval", "II", Mammal, 1),
    t("Civettictis civetta", MAMM, "Carnivora", "Viverridae", "Civettictis", "African civet", "III", Mammal, 1),
    t("Kobus leche", MAMM, "Artiodactyla", "Bovidae", "Kobus", "Lechwe", "II", Mammal, 1),
    t("Dendrobium anosmum", "", "Orchidales", "Orchidaceae", "Dendrobium", "Unscented dendrobium", "II", Plant, 1),
    t("Vanda coerulea", "", "Orchidales", "Orchidaceae", "Vanda", "Blue vanda", "II", Plant, 1),
    t("Cymbidium hookerianum", "", "Orchidales", "Orchidaceae", "Cymbidium", "Hooker's cymbidium", "II", Plant, 1),
    t("Euphorbia milii", "", "Euphorbiales", "Euphorbiaceae", "Euphorbia", "Crown of thorns", "II", Plant, 1),
    t("Aloe polyphylla", "", "Liliales", "Liliaceae", "Aloe", "Spiral aloe", "I", Plant, 1),
    t("Cyclamen persicum", "", "Primulales", "Primulaceae", "Cyclamen", "Persian cyclamen", "II", Plant, 1),
    t("Dalbergia melanoxylon", "", "Fabales", "Leguminosae", "Dalbergia", "African blackwood", "II", Timber, 1),
];

/// The 43 Arctic species as CITES names them (a subset of [`known_taxa`]).
pub fn arctic_taxa() -> &'static [Taxon] {
    &ARCTIC
}

/// Every taxon the generator writes in a well-formed row with a known taxon: the 43
/// [`arctic_taxa`] first, then the others.
pub fn known_taxa() -> impl Iterator<Item = &'static Taxon> {
    ARCTIC.iter().chain(OTHERS.iter())
}

/// The real taxa the generator uses for "unknown taxon" rows; none is in [`known_taxa`].
pub fn unknown_taxa() -> &'static [Taxon] {
    UNKNOWN
}

// ---------------------------------------------------------------------------------------
// Terms, units and codes
// ---------------------------------------------------------------------------------------

type Weights = &'static [(&'static str, u32)];

const U_COUNT: Weights = &[("", 96), ("Number of specimens", 4)];
const U_KG: Weights = &[("kg", 85), ("g", 15)];
const U_KG_COUNT: Weights = &[("", 60), ("kg", 35), ("g", 5)];
const U_ML: Weights = &[("ml", 50), ("g", 25), ("", 15), ("l", 5), ("mg", 5)];
const U_WOOD: Weights = &[("m3", 85), ("kg", 10), ("", 5)];
const U_VENEER: Weights = &[("m2", 80), ("m3", 15), ("kg", 5)];
const U_SKIN: Weights = &[
    ("", 90),
    ("m2", 4),
    ("m", 3),
    ("kg", 2),
    ("Number of specimens", 1),
];
const U_LEATHER: Weights = &[("", 92), ("pairs", 3), ("sets", 2), ("m2", 3)];
const U_EXTRACT: Weights = &[("kg", 60), ("g", 15), ("l", 10), ("ml", 10), ("", 5)];
const U_CORAL: Weights = &[("", 55), ("kg", 45)];

struct TermSpec {
    term: &'static str,
    weight: u32,
    units: Weights,
}

const fn ts(term: &'static str, weight: u32, units: Weights) -> TermSpec {
    TermSpec {
        term,
        weight,
        units,
    }
}

static TERMS_MAMMAL: &[TermSpec] = &[
    ts("trophies", 25, U_COUNT),
    ts("skins", 20, U_SKIN),
    ts("live", 14, U_COUNT),
    ts("specimens", 12, U_ML),
    ts("skulls", 5, U_COUNT),
    ts("bodies", 3, U_KG_COUNT),
    ts("teeth", 3, U_COUNT),
    ts("claws", 2, U_COUNT),
    ts("hair", 2, U_KG),
    ts("bones", 2, U_KG_COUNT),
    ts("carvings", 3, U_COUNT),
    ts("ivory carvings", 2, U_COUNT),
    ts("tusks", 1, U_COUNT),
    ts("horns", 1, U_COUNT),
    ts("garments", 2, U_COUNT),
    ts("leather products (small)", 2, U_LEATHER),
    ts("meat", 1, U_KG),
    ts("derivatives", 2, U_KG_COUNT),
    ts("musk", 1, U_KG),
    ts("unspecified", 1, U_COUNT),
];
static TERMS_CETACEAN: &[TermSpec] = &[
    ts("specimens", 45, U_ML),
    ts("bones", 8, U_KG_COUNT),
    ts("teeth", 8, U_COUNT),
    ts("carvings", 8, U_COUNT),
    ts("live", 5, U_COUNT),
    ts("bodies", 4, U_COUNT),
    ts("skeletons", 4, U_COUNT),
    ts("skulls", 3, U_COUNT),
    ts("baleen", 3, U_KG_COUNT),
    ts("tusks", 3, U_COUNT),
    ts("meat", 3, U_KG),
    ts("oil", 1, U_EXTRACT),
    ts("derivatives", 4, U_KG_COUNT),
    ts("unspecified", 1, U_COUNT),
];
static TERMS_BIRD: &[TermSpec] = &[
    ts("live", 55, U_COUNT),
    ts("feathers", 12, U_KG_COUNT),
    ts("specimens", 12, U_ML),
    ts("bodies", 5, U_COUNT),
    ts("eggs", 3, U_COUNT),
    ts("eggs (live)", 3, U_COUNT),
    ts("skins", 3, U_COUNT),
    ts("trophies", 2, U_COUNT),
    ts("leather products (small)", 2, U_LEATHER),
    ts("skeletons", 1, U_COUNT),
    ts("derivatives", 1, U_KG_COUNT),
    ts("unspecified", 1, U_COUNT),
];
static TERMS_REPTILE: &[TermSpec] = &[
    ts("skins", 28, U_SKIN),
    ts("leather products (small)", 18, U_LEATHER),
    ts("live", 18, U_COUNT),
    ts("leather products (large)", 5, U_LEATHER),
    ts("skin pieces", 4, U_KG_COUNT),
    ts("shoes", 4, U_LEATHER),
    ts("watchstraps", 4, U_COUNT),
    ts("meat", 3, U_KG),
    ts("specimens", 5, U_ML),
    ts("bodies", 2, U_COUNT),
    ts("tails", 1, U_KG_COUNT),
    ts("eggs", 1, U_COUNT),
    ts("gall", 1, U_KG),
    ts("derivatives", 2, U_KG_COUNT),
    ts("trophies", 1, U_COUNT),
];
static TERMS_TURTLE: &[TermSpec] = &[
    ts("live", 70, U_COUNT),
    ts("specimens", 10, U_ML),
    ts("shells", 6, U_COUNT),
    ts("carvings", 4, U_COUNT),
    ts("bodies", 3, U_COUNT),
    ts("eggs", 2, U_COUNT),
    ts("meat", 2, U_KG),
    ts("scales", 2, U_KG),
    ts("derivatives", 1, U_KG_COUNT),
];
static TERMS_AMPHIBIAN: &[TermSpec] = &[
    ts("live", 80, U_COUNT),
    ts("specimens", 12, U_ML),
    ts("bodies", 4, U_COUNT),
    ts("meat", 2, U_KG),
    ts("derivatives", 2, U_KG_COUNT),
];
static TERMS_STURGEON: &[TermSpec] = &[
    ts("caviar", 45, U_KG),
    ts("live", 18, U_COUNT),
    ts("meat", 10, U_KG),
    ts("eggs (live)", 5, U_KG_COUNT),
    ts("fingerlings", 5, U_COUNT),
    ts("extract", 4, U_EXTRACT),
    ts("specimens", 5, U_ML),
    ts("bodies", 4, U_KG_COUNT),
    ts("derivatives", 3, U_KG_COUNT),
    ts("skins", 1, U_SKIN),
];
static TERMS_FISH: &[TermSpec] = &[
    ts("live", 60, U_COUNT),
    ts("bodies", 15, U_KG_COUNT),
    ts("meat", 8, U_KG),
    ts("specimens", 8, U_ML),
    ts("derivatives", 4, U_KG_COUNT),
    ts("skins", 3, U_SKIN),
    ts("swim bladders", 2, U_KG),
];
static TERMS_SHARK: &[TermSpec] = &[
    ts("fins", 30, U_KG),
    ts("meat", 25, U_KG),
    ts("specimens", 12, U_ML),
    ts("bodies", 8, U_KG_COUNT),
    ts("teeth", 6, U_COUNT),
    ts("oil", 4, U_EXTRACT),
    ts("cartilage", 4, U_KG),
    ts("jaws", 4, U_COUNT),
    ts("live", 4, U_COUNT),
    ts("derivatives", 3, U_KG_COUNT),
];
static TERMS_CORAL: &[TermSpec] = &[
    ts("live", 45, U_COUNT),
    ts("raw corals", 30, U_CORAL),
    ts("specimens", 8, U_ML),
    ts("carvings", 6, U_COUNT),
    ts("coral sand", 3, U_KG),
    ts("derivatives", 3, U_KG_COUNT),
    ts("unspecified", 1, U_COUNT),
];
static TERMS_INVERT: &[TermSpec] = &[
    ts("live", 45, U_COUNT),
    ts("shells", 15, U_COUNT),
    ts("meat", 15, U_KG),
    ts("bodies", 8, U_COUNT),
    ts("specimens", 8, U_ML),
    ts("carvings", 4, U_COUNT),
    ts("derivatives", 3, U_KG_COUNT),
    ts("pearls", 2, U_COUNT),
];
static TERMS_PLANT: &[TermSpec] = &[
    ts("live", 65, U_COUNT),
    ts("flowers", 8, U_KG_COUNT),
    ts("seeds", 5, U_KG_COUNT),
    ts("dried plants", 4, U_KG_COUNT),
    ts("stems", 4, U_KG_COUNT),
    ts("leaves", 3, U_KG),
    ts("specimens", 3, U_COUNT),
    ts("extract", 3, U_EXTRACT),
    ts("roots", 2, U_KG),
    ts("derivatives", 2, U_KG_COUNT),
    ts("timber pieces", 1, U_KG_COUNT),
];
static TERMS_MEDICINAL: &[TermSpec] = &[
    ts("extract", 30, U_EXTRACT),
    ts("roots", 15, U_KG),
    ts("bark", 8, U_KG),
    ts("powder", 8, U_KG),
    ts("dried plants", 8, U_KG),
    ts("derivatives", 8, U_KG_COUNT),
    ts("live", 8, U_COUNT),
    ts("chips", 5, U_KG),
    ts("oil", 4, U_EXTRACT),
    ts("medicine", 3, U_KG_COUNT),
    ts("seeds", 2, U_KG_COUNT),
    ts("wood product", 1, U_COUNT),
];
static TERMS_TIMBER: &[TermSpec] = &[
    ts("sawn wood", 35, U_WOOD),
    ts("timber", 20, U_WOOD),
    ts("logs", 15, U_WOOD),
    ts("veneer", 10, U_VENEER),
    ts("carvings", 6, U_COUNT),
    ts("wood product", 5, U_COUNT),
    ts("musical instruments", 3, U_COUNT),
    ts("chips", 2, U_KG),
    ts("live", 2, U_COUNT),
    ts("specimens", 2, U_COUNT),
];

fn terms_of(kind: TaxonKind) -> &'static [TermSpec] {
    match kind {
        Mammal => TERMS_MAMMAL,
        Cetacean => TERMS_CETACEAN,
        Bird => TERMS_BIRD,
        Reptile => TERMS_REPTILE,
        Turtle => TERMS_TURTLE,
        Amphibian => TERMS_AMPHIBIAN,
        Sturgeon => TERMS_STURGEON,
        Fish => TERMS_FISH,
        Shark => TERMS_SHARK,
        Coral => TERMS_CORAL,
        Invertebrate => TERMS_INVERT,
        Plant => TERMS_PLANT,
        MedicinalPlant => TERMS_MEDICINAL,
        Timber => TERMS_TIMBER,
    }
}

#[rustfmt::skip]
const PURPOSE_ANIMAL: Weights = &[
    ("T", 40), ("S", 14), ("P", 12), ("H", 9), ("Z", 6), ("Q", 3), ("B", 4), ("M", 3), ("E", 2),
    ("N", 2), ("L", 1), ("G", 1), ("Y", 1), ("", 4),
];
#[rustfmt::skip]
const PURPOSE_PLANT: Weights = &[
    ("T", 70), ("S", 6), ("P", 5), ("M", 4), ("B", 2), ("E", 2), ("Q", 2), ("G", 2), ("N", 1),
    ("Y", 1), ("L", 1), ("", 4),
];
const PURPOSE_TROPHY: Weights = &[("H", 85), ("P", 8), ("T", 3), ("S", 2), ("", 2)];
#[rustfmt::skip]
const SOURCE_ANIMAL: Weights = &[
    ("W", 45), ("C", 22), ("F", 6), ("R", 3), ("D", 3), ("I", 3), ("O", 4), ("U", 2), ("X", 1),
    ("A", 1), ("", 6),
];
#[rustfmt::skip]
const SOURCE_REPTILE: Weights = &[
    ("W", 30), ("C", 30), ("R", 20), ("F", 6), ("D", 3), ("I", 3), ("O", 2), ("U", 1), ("", 5),
];
#[rustfmt::skip]
const SOURCE_PLANT: Weights = &[
    ("A", 55), ("W", 20), ("D", 5), ("I", 3), ("O", 3), ("C", 1), ("U", 1), ("X", 1), ("", 6),
];

/// Importer/exporter codes with relative frequencies; `NA` is Namibia, `XX` unknown.
#[rustfmt::skip]
const COUNTRIES: Weights = &[
    ("US", 120), ("DE", 60), ("FR", 55), ("GB", 45), ("IT", 50), ("JP", 50), ("CH", 45),
    ("CN", 40), ("HK", 35), ("SG", 30), ("ES", 30), ("NL", 30), ("BE", 15), ("AT", 12),
    ("CA", 35), ("MX", 15), ("AU", 20), ("NZ", 10), ("ZA", 40), ("NA", 25), ("BW", 10),
    ("ZW", 15), ("ZM", 6), ("TZ", 12), ("KE", 5), ("MZ", 6), ("CM", 8), ("CD", 8), ("CG", 5),
    ("GA", 3), ("GH", 5), ("NG", 4), ("SN", 4), ("MG", 12), ("ET", 3), ("UG", 4), ("EG", 3),
    ("MA", 3), ("TN", 2), ("ID", 40), ("MY", 25), ("TH", 25), ("VN", 15), ("PH", 8),
    ("TW", 12), ("KR", 15), ("IN", 8), ("PK", 4), ("AE", 15), ("SA", 6), ("QA", 6),
    ("KW", 3), ("TR", 8), ("IL", 5), ("RU", 20), ("UA", 5), ("KZ", 3), ("PL", 10),
    ("CZ", 12), ("HU", 5), ("PT", 8), ("GR", 4), ("DK", 8), ("SE", 6), ("NO", 4), ("FI", 3),
    ("IS", 2), ("GL", 3), ("IE", 3), ("LU", 1), ("BR", 12), ("AR", 15), ("CO", 15),
    ("PE", 10), ("EC", 5), ("BO", 6), ("PY", 4), ("GY", 6), ("SR", 4), ("VE", 5), ("NI", 4),
    ("HN", 3), ("CR", 3), ("CL", 3), ("CU", 2), ("PG", 6), ("SB", 4), ("FJ", 3), ("XX", 3),
];

/// Draws a weighted entry by linear scan (for the small per-row tables).
fn pick<'a, T>(rng: &mut SplitMix64, items: &'a [T], weight: impl Fn(&T) -> u32) -> &'a T {
    let total: u32 = items.iter().map(&weight).sum();
    let mut r = rng.below(u64::from(total)) as u32;
    for item in items {
        let w = weight(item);
        if r < w {
            return item;
        }
        r -= w;
    }
    &items[items.len() - 1]
}

fn pick_str(rng: &mut SplitMix64, items: Weights) -> &'static str {
    pick(rng, items, |(_, w)| *w).0
}

// ---------------------------------------------------------------------------------------
// PRNG and precomputed tables
// ---------------------------------------------------------------------------------------

/// splitmix64 (Steele, Lea, Flood 2014): small, fast and good enough for test data.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[lo, hi]`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
}

/// A weighted table with cumulative weights, for the large taxa and country lists.
struct Cumulative<T: 'static> {
    items: Vec<&'static T>,
    cum: Vec<u64>,
}

impl<T> Cumulative<T> {
    fn new(items: impl Iterator<Item = (&'static T, u32)>) -> Self {
        let mut out = Self {
            items: Vec::new(),
            cum: Vec::new(),
        };
        let mut acc = 0u64;
        for (item, w) in items {
            acc += u64::from(w);
            out.items.push(item);
            out.cum.push(acc);
        }
        out
    }

    fn draw(&self, rng: &mut SplitMix64) -> &'static T {
        let total = *self.cum.last().expect("non-empty table");
        let r = rng.below(total);
        let i = self.cum.partition_point(|&c| c <= r);
        self.items[i]
    }
}

/// Share of rows (of the known-taxon rows) naming one of the 43 Arctic species.
const ARCTIC_SHARE: f64 = 0.15;

struct Tables {
    arctic: Cumulative<Taxon>,
    others: Cumulative<Taxon>,
    unknown: Cumulative<Taxon>,
    countries: Cumulative<&'static str>,
    /// Cumulative share of rows of each year 1975..=2024 (recent years more common).
    year_cdf: Vec<f64>,
}

impl Tables {
    fn new() -> Self {
        let taxa = |list: &'static [Taxon]| Cumulative::new(list.iter().map(|t| (t, t.weight)));
        let countries = Cumulative::new(COUNTRIES.iter().map(|(c, w)| (c, *w)));
        // Weight (y - 1975 + 6)^2: 1975 has 36 parts, 2023 has 2916; 2024 is half
        // reported yet (reporting lag), as in a real release.
        let weights: Vec<f64> = (FIRST_YEAR..=LAST_YEAR)
            .map(|y| {
                let k = f64::from(y - FIRST_YEAR + 6);
                if y == LAST_YEAR { k * k / 2.0 } else { k * k }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let year_cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Self {
            arctic: taxa(&ARCTIC),
            others: taxa(OTHERS),
            unknown: taxa(UNKNOWN),
            countries,
            year_cdf,
        }
    }

    /// The year at quantile `u` in `[0, 1)`.
    fn year_at(&self, u: f64) -> u16 {
        let i = self
            .year_cdf
            .partition_point(|&c| c <= u)
            .min(self.year_cdf.len() - 1);
        FIRST_YEAR + i as u16
    }

    fn country(&self, rng: &mut SplitMix64) -> &'static str {
        self.countries.draw(rng)
    }
}

// ---------------------------------------------------------------------------------------
// Row writing
// ---------------------------------------------------------------------------------------

fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

fn push_quoted(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    buf.extend_from_slice(s.as_bytes());
    buf.push(b'"');
}

fn push_id(buf: &mut Vec<u8>, id: u64) {
    buf.push(b'"');
    let start = buf.len();
    push_u64(buf, id);
    let digits = buf.len() - start;
    if digits < 10 {
        // Zero-pad to 10 digits: shift right and fill.
        let pad = 10 - digits;
        buf.splice(start..start, std::iter::repeat_n(b'0', pad));
    }
    buf.push(b'"');
}

const POW10: [u64; 11] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
];

/// Writes `mantissa / 10^scale` in plain decimal notation without trailing zeros.
fn push_decimal(buf: &mut Vec<u8>, mantissa: u64, scale: u32) {
    let p = POW10[scale as usize];
    push_u64(buf, mantissa / p);
    let mut frac = mantissa % p;
    if frac == 0 {
        return;
    }
    let mut digits = scale;
    while frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    buf.push(b'.');
    let start = buf.len();
    push_u64(buf, frac);
    let written = (buf.len() - start) as u32;
    if written < digits {
        buf.splice(
            start..start,
            std::iter::repeat_n(b'0', (digits - written) as usize),
        );
    }
}

/// True for units that count items (quantities are then mostly small integers).
fn is_count_unit(unit: &str) -> bool {
    matches!(unit, "" | "Number of specimens" | "pairs" | "sets")
}

/// Draws a quantity as `(mantissa, scale)`: the value is `mantissa / 10^scale`.
fn quantity(rng: &mut SplitMix64, unit: &str) -> (u64, u32) {
    let r = rng.f64();
    if r < 0.0005 {
        // A few huge quantities (billions of specimens or grams), as the real data has.
        const HUGE: [u64; 6] = [
            2_500_000_000,
            1_000_000_000,
            120_000_000,
            4_750_000_000,
            300_000_000,
            1_864_512_000,
        ];
        return (HUGE[rng.below(HUGE.len() as u64) as usize], 0);
    }
    if is_count_unit(unit) {
        let r = rng.f64();
        if r < 0.30 {
            (1, 0)
        } else if r < 0.62 {
            (rng.range(2, 10), 0)
        } else if r < 0.80 {
            (rng.range(11, 100), 0)
        } else if r < 0.91 {
            (rng.range(101, 1_000), 0)
        } else if r < 0.97 {
            (rng.range(1_001, 250_000), 0)
        } else {
            // Fractional counts exist too (half skins, partial sets): 0.5, 12.75 ...
            match rng.below(4) {
                0 => (5, 1),
                1 => (rng.range(1, 99) * 100 + 75, 2),
                2 => (rng.range(1, 999) * 10 + 5, 1),
                _ => (rng.range(1, 99_999), 2),
            }
        }
    } else {
        // Weights and volumes: log-uniform magnitude 0.001 .. 100,000 with 0..=6 decimals.
        let scale = match rng.below(100) {
            0..40 => 0,
            40..55 => 1,
            55..80 => 2,
            80..92 => 3,
            92..96 => 4,
            96..98 => 5,
            _ => 6,
        };
        let exponent = rng.below(8) as usize; // 10^(exponent-3)
        let value_scaled =
            (1.0 + 9.0 * rng.f64()) * POW10[exponent] as f64 * POW10[scale] as f64 / 1_000.0;
        let mantissa = (value_scaled.round() as u64).max(1);
        (mantissa, scale as u32)
    }
}

fn push_permit(buf: &mut Vec<u8>, rng: &mut SplitMix64, present: bool) {
    if !present {
        buf.extend_from_slice(b"\"\"");
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = rng.next_u64();
    buf.push(b'"');
    for i in 0..10 {
        buf.push(HEX[((bits >> (i * 4)) & 0xf) as usize]);
    }
    buf.push(b'"');
}

/// Which noise a row carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RowFlavor {
    Good {
        unknown_taxon: bool,
        missing_quantity: bool,
    },
    Bad(BadRowKind),
}

/// State that runs across files.
struct Generator<'o> {
    opts: &'o GenOptions,
    tables: Tables,
    next_id: u64,
    bad_count: u64,
    summary: GenSummary,
    buf: Vec<u8>,
}

impl<'o> Generator<'o> {
    fn new(opts: &'o GenOptions) -> Self {
        Self {
            opts,
            tables: Tables::new(),
            next_id: opts.first_id,
            bad_count: 0,
            summary: GenSummary::default(),
            buf: Vec::with_capacity(512),
        }
    }

    fn file_rng(&self, file_index: usize) -> SplitMix64 {
        // Mix seed and file number so each file has its own independent stream.
        let mut s = SplitMix64(self.opts.seed ^ 0xC17E_5000_0000_0000);
        let a = s.next_u64();
        let mut t = SplitMix64(a ^ (file_index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        t.next_u64();
        t
    }

    fn write_file(&mut self, path: &Path, file_index: usize) -> io::Result<()> {
        let mut rng = self.file_rng(file_index);
        let file = File::create(path)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(HEADER.as_bytes())?;
        out.write_all(b"\n")?;
        let mut bytes = HEADER.len() as u64 + 1;
        let mut arctic_cycle = 0usize;
        let files = self.opts.files.max(1) as f64;
        for row in 0..self.opts.rows_per_file {
            let id = self.next_id;
            if id > MAX_ID {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("Id {id} would exceed 10 digits; lower first_id or the row count"),
                ));
            }
            self.next_id = id + rng.range(1, 32);
            let flavor = if rng.chance(self.opts.bad_row_rate) {
                let kind =
                    BadRowKind::ALL[(self.bad_count % BadRowKind::ALL.len() as u64) as usize];
                self.bad_count += 1;
                self.summary.bad_rows.push(BadRow {
                    file: file_index + 1,
                    line: row as u64 + 2,
                    id,
                    kind,
                });
                RowFlavor::Bad(kind)
            } else {
                let unknown_taxon = rng.chance(self.opts.unknown_taxon_rate);
                let missing_quantity = rng.chance(self.opts.missing_quantity_rate);
                self.summary.unknown_taxon_rows += u64::from(unknown_taxon);
                self.summary.missing_quantity_rows += u64::from(missing_quantity);
                RowFlavor::Good {
                    unknown_taxon,
                    missing_quantity,
                }
            };
            // Chronological files: most rows fall in this file's band of the year
            // distribution; some are late reports of any earlier year.
            let u = if rng.chance(0.9) {
                (file_index as f64 + rng.f64()) / files
            } else {
                rng.f64() * (file_index as f64 + 1.0) / files
            };
            let year = self.tables.year_at(u);
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            let arctic = self.write_row(&mut buf, &mut rng, id, year, flavor, &mut arctic_cycle);
            if arctic
                && matches!(
                    flavor,
                    RowFlavor::Good {
                        unknown_taxon: false,
                        ..
                    }
                )
            {
                self.summary.arctic_rows += 1;
            }
            out.write_all(&buf)?;
            bytes += buf.len() as u64;
            self.buf = buf;
        }
        out.flush()?;
        self.summary.rows += self.opts.rows_per_file as u64;
        self.summary.bytes += bytes;
        Ok(())
    }

    /// Appends one row (with its LF) to `buf`; returns whether the taxon is Arctic.
    fn write_row(
        &self,
        buf: &mut Vec<u8>,
        rng: &mut SplitMix64,
        id: u64,
        year: u16,
        flavor: RowFlavor,
        arctic_cycle: &mut usize,
    ) -> bool {
        let tables = &self.tables;
        let (taxon, arctic) = match flavor {
            RowFlavor::Good {
                unknown_taxon: true,
                ..
            } => (tables.unknown.draw(rng), false),
            _ if rng.chance(ARCTIC_SHARE) => {
                // The first Arctic rows of each file go through all 43 species once, so
                // even a small file holds every one of them.
                let taxon = match ARCTIC.get(*arctic_cycle) {
                    Some(t) => t,
                    None => tables.arctic.draw(rng),
                };
                *arctic_cycle += 1;
                (taxon, true)
            }
            _ => (tables.others.draw(rng), false),
        };
        let plant = matches!(taxon.kind, Plant | MedicinalPlant | Timber);
        let spec = pick(rng, terms_of(taxon.kind), |s| s.weight);
        let unit = pick_str(rng, spec.units);
        let appendix = match rng.below(100) {
            0..94 => taxon.appendix,
            94..97 => {
                if taxon.appendix == "II" {
                    "I"
                } else {
                    "II"
                }
            }
            97..99 => "III",
            _ => "N",
        };
        let importer = tables.country(rng);
        let mut exporter = tables.country(rng);
        for _ in 0..4 {
            if exporter != importer {
                break;
            }
            exporter = tables.country(rng);
        }
        let origin = match rng.below(100) {
            0..65 => "",
            65..72 => "XX",
            _ => tables.country(rng),
        };
        // The Soviet Union reported as SU until 1991.
        let historic = |c: &'static str| if c == "RU" && year < 1992 { "SU" } else { c };
        let purpose = if spec.term == "trophies" {
            pick_str(rng, PURPOSE_TROPHY)
        } else if plant {
            pick_str(rng, PURPOSE_PLANT)
        } else {
            pick_str(rng, PURPOSE_ANIMAL)
        };
        let source = match taxon.kind {
            _ if plant => pick_str(rng, SOURCE_PLANT),
            Reptile => pick_str(rng, SOURCE_REPTILE),
            _ => pick_str(rng, SOURCE_ANIMAL),
        };
        let exporter_reported = rng.chance(0.55);
        let (mantissa, scale) = quantity(rng, unit);

        let bad = match flavor {
            RowFlavor::Bad(kind) => Some(kind),
            RowFlavor::Good { .. } => None,
        };

        // Id, Year
        push_id(buf, id);
        buf.push(b',');
        match bad {
            Some(BadRowKind::YearNotInteger) => buf.extend_from_slice(b"19x5"),
            Some(BadRowKind::YearTooEarly) => buf.extend_from_slice(b"1899"),
            Some(BadRowKind::YearTooLate) => buf.extend_from_slice(b"2031"),
            _ => push_u64(buf, u64::from(year)),
        }
        buf.push(b',');
        // Appendix
        if bad == Some(BadRowKind::AppendixInvalid) {
            push_quoted(buf, "IV");
        } else {
            push_quoted(buf, appendix);
        }
        buf.push(b',');
        // Taxon, Class, Order, Family, Genus, Term
        if bad == Some(BadRowKind::EmptyTaxon) {
            push_quoted(buf, "");
        } else {
            push_quoted(buf, taxon.name);
        }
        for field in [
            taxon.class,
            taxon.order,
            taxon.family,
            taxon.genus,
            spec.term,
        ] {
            buf.push(b',');
            push_quoted(buf, field);
        }
        buf.push(b',');
        // Quantity (unquoted; missing = nothing)
        match (bad, flavor) {
            (Some(BadRowKind::QuantityText), _) => push_quoted(buf, "abc"),
            (Some(BadRowKind::QuantityMalformed), _) => buf.extend_from_slice(b"1.2.3"),
            (
                _,
                RowFlavor::Good {
                    missing_quantity: true,
                    ..
                },
            ) => {}
            _ => push_decimal(buf, mantissa, scale),
        }
        buf.push(b',');
        // Unit, Importer, Exporter, Origin, Purpose, Source, Reporter.type
        push_quoted(buf, unit);
        buf.push(b',');
        push_quoted(buf, historic(importer));
        buf.push(b',');
        push_quoted(buf, historic(exporter));
        if bad != Some(BadRowKind::WrongFieldCount) {
            buf.push(b',');
            push_quoted(buf, historic(origin));
        }
        buf.push(b',');
        push_quoted(buf, purpose);
        buf.push(b',');
        push_quoted(buf, source);
        buf.push(b',');
        push_quoted(buf, if exporter_reported { "E" } else { "I" });
        // Permits: the reporting side's own permit is usually known.
        let (p_import, p_export) = if exporter_reported {
            (0.10, 0.85)
        } else {
            (0.75, 0.70)
        };
        let p_origin = if origin.is_empty() || origin == "XX" {
            0.01
        } else {
            0.40
        };
        for p in [p_import, p_export, p_origin] {
            buf.push(b',');
            let present = rng.chance(p);
            push_permit(buf, rng, present);
        }
        buf.push(b'\n');
        arctic
    }
}

fn check_options(opts: &GenOptions) -> io::Result<()> {
    for (name, rate) in [
        ("bad_row_rate", opts.bad_row_rate),
        ("unknown_taxon_rate", opts.unknown_taxon_rate),
        ("missing_quantity_rate", opts.missing_quantity_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name} must be within 0..=1, got {rate}"),
            ));
        }
    }
    if opts.first_id > MAX_ID {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("first_id {} has more than 10 digits", opts.first_id),
        ));
    }
    Ok(())
}

/// Writes `trade_db_1.csv` .. `trade_db_{files}.csv` into `dir` (created if missing) and
/// reports what it wrote. Deterministic: the same options give byte-identical files.
pub fn generate(dir: &Path, opts: &GenOptions) -> io::Result<GenSummary> {
    check_options(opts)?;
    std::fs::create_dir_all(dir)?;
    let mut generator = Generator::new(opts);
    for index in 0..opts.files {
        let path = dir.join(format!("trade_db_{}.csv", index + 1));
        generator.write_file(&path, index)?;
        generator.summary.files.push(path);
    }
    Ok(generator.summary)
}

/// Writes `trade_db_1.csv` .. `trade_db_{files}.csv` into `dir` and returns their paths.
/// See [`generate`] for a summary of what was written.
pub fn write_files(dir: &Path, opts: &GenOptions) -> io::Result<Vec<PathBuf>> {
    generate(dir, opts).map(|s| s.files)
}

fn push_csv_field(buf: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        buf.push('"');
        buf.push_str(&s.replace('"', "\"\""));
        buf.push('"');
    } else {
        buf.push_str(s);
    }
}

/// Writes `scientific_name,common_name` (with that header, LF line endings, RFC 4180
/// quoting only where needed) for every taxon in [`known_taxa`], in that order.
pub fn write_species_csv(path: &Path) -> io::Result<()> {
    let mut text = String::from("scientific_name,common_name\n");
    for taxon in known_taxa() {
        push_csv_field(&mut text, taxon.name);
        text.push(',');
        push_csv_field(&mut text, taxon.common_name);
        text.push('\n');
    }
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_plain_and_trimmed() {
        let mut b = Vec::new();
        for (m, s, want) in [
            (5, 1, "0.5"),
            (1275, 2, "12.75"),
            (1200, 2, "12"),
            (1_000_001, 6, "1.000001"),
            (2_500_000_000, 0, "2500000000"),
            (1050, 3, "1.05"),
        ] {
            b.clear();
            push_decimal(&mut b, m, s);
            assert_eq!(std::str::from_utf8(&b).unwrap(), want);
        }
    }

    #[test]
    fn ids_are_ten_digits() {
        let mut b = Vec::new();
        push_id(&mut b, 42);
        assert_eq!(b, b"\"0000000042\"");
    }

    #[test]
    fn unknown_taxa_are_not_known() {
        for u in unknown_taxa() {
            assert!(known_taxa().all(|k| k.name != u.name), "{}", u.name);
        }
        let mut names: Vec<_> = known_taxa().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), known_taxa().count(), "duplicate known taxon");
    }
}
