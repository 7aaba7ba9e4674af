//! `ferry-pg`: start/stop a throwaway PostgreSQL cluster from the command line, with the same
//! logic as `etl_testkit::TempPostgres` (used by `scripts/pg.sh`, `scripts/test.sh` and
//! `scripts/dev-db.sh`).
//!
//! ```text
//! ferry-pg start DIR             initdb DIR if needed, start it (or reuse it), print its URL
//! ferry-pg url DIR               print the URL of the server running on DIR (exit 1 if none)
//! ferry-pg stop DIR [--keep-data] stop the server on DIR and delete DIR (unless --keep-data)
//! ```
//! The URL goes to stdout, everything else to stderr, so `URL=$(ferry-pg start DIR)` works.

use std::process::ExitCode;

const USAGE: &str = "usage: ferry-pg start DIR | url DIR | stop DIR [--keep-data]";

async fn real_main(args: &[String]) -> Result<ExitCode, String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["start", dir] => {
            let pg = etl_testkit::TempPostgres::start(dir)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!(
                "ferry-pg: PostgreSQL running on {} (data in {})",
                pg.url(),
                pg.data_dir().display()
            );
            println!("{}", pg.keep());
            Ok(ExitCode::SUCCESS)
        }
        ["url", dir] => match etl_testkit::running_url(dir) {
            Some(url) => {
                println!("{url}");
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("ferry-pg: no PostgreSQL server is running on {dir}");
                Ok(ExitCode::FAILURE)
            }
        },
        ["stop", dir, rest @ ..] if rest.is_empty() || rest == ["--keep-data"] => {
            let delete = rest.is_empty();
            let was_running = etl_testkit::stop_cluster(dir, delete)
                .await
                .map_err(|e| e.to_string())?;
            let what = if was_running {
                "stopped"
            } else {
                "no server was running on"
            };
            let data = if delete {
                ", data deleted"
            } else {
                ", data kept"
            };
            eprintln!("ferry-pg: {what} {dir}{data}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(USAGE.to_string()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry-pg: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(real_main(&args)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("ferry-pg: {message}");
            ExitCode::from(2)
        }
    }
}
