//! `burrow search TERM`: repositories of registries that list them (`/v2/_catalog`).

use anyhow::Result;
use burrow_registry::conf::RegistriesConf;

use super::pull::RegistryFlags;

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Term to search for (`REGISTRY/TERM` searches that registry only)
    #[arg(value_name = "TERM")]
    term: String,
    /// Limit the number of results
    #[arg(long, default_value_t = 25)]
    limit: usize,
    /// List the tags of the repository TERM names
    #[arg(long = "list-tags")]
    list_tags: bool,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Change the output format to JSON or a Go template (`{{.Name}}` only)
    #[arg(long)]
    format: Option<String>,
    #[command(flatten)]
    registry: RegistryFlags,
}

pub fn search(args: SearchArgs) -> Result<i32> {
    let conf = RegistriesConf::load()?;
    let opts = args.registry.client_options()?;
    let found = burrow_registry::search::search(&conf, &args.term, &opts, args.list_tags, args.limit)?;
    let _ = args.no_trunc;
    match args.format.as_deref() {
        Some("json") => {
            let v: Vec<serde_json::Value> = found
                .iter()
                .map(|f| {
                    if args.list_tags {
                        serde_json::json!({"Name": f.name, "Tags": f.tags})
                    } else {
                        serde_json::json!({"Index": f.name.split('/').next(), "Name": f.name, "Description": ""})
                    }
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Some(t) => {
            for f in &found {
                println!(
                    "{}",
                    t.replace("{{.Name}}", &f.name).replace("{{ .Name }}", &f.name)
                );
            }
        }
        None if args.list_tags => {
            println!("NAME{}TAG", " ".repeat(24));
            for f in &found {
                for t in f.tags.iter().take(args.limit) {
                    println!("{:<27} {t}", f.name);
                }
            }
        }
        None => {
            println!("NAME{}DESCRIPTION", " ".repeat(24));
            for f in &found {
                println!("{:<27}", f.name);
            }
        }
    }
    Ok(0)
}
