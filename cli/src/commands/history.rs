//! `burrow history`: an image's history entries, newest first, with layer sizes.

use anyhow::Result;
use serde_json::{json, Value};

use super::format::{self, human_size, since, Format};
use super::imageutil::parse_rfc3339;
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Change the output to JSON or a Go template
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Display sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    human: bool,
    /// Do not truncate the output
    #[arg(long)]
    no_trunc: bool,
    /// Display the numeric IDs only
    #[arg(short, long)]
    quiet: bool,
    #[arg(value_name = "IMAGE")]
    image: String,
}

pub fn history(args: HistoryArgs, global: &GlobalOptions) -> Result<i32> {
    let engine = Engine::open(global)?;
    let image = engine.store.image(&args.image)?;
    let sizes = engine.store.layer_sizes()?;
    let raw: Value = serde_json::from_str(&image.config_json)?;
    let mut entries: Vec<Value> = raw["history"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        entries = image.layers.iter().map(|_| json!({})).collect();
    }
    // Entries that made a layer take the layers in order, bottom first.
    let mut layers = image.layers.iter();
    let mut rows = Vec::new();
    for h in &entries {
        let size = if h["empty_layer"].as_bool() == Some(true) {
            0
        } else {
            layers.next().and_then(|l| sizes.get(l)).copied().unwrap_or(0)
        };
        let created = h["created"].as_str().and_then(parse_rfc3339).unwrap_or(0);
        let created_by = h["created_by"].as_str().unwrap_or_default().to_string();
        rows.push((
            created,
            created_by,
            size,
            h["comment"].as_str().unwrap_or_default().to_string(),
        ));
    }
    rows.reverse();
    let mut out = Vec::new();
    for (i, (created, created_by, size, comment)) in rows.into_iter().enumerate() {
        let id = match (i, args.no_trunc) {
            (0, true) => image.id.clone(),
            (0, false) => image.id[..12].to_string(),
            _ => "<missing>".into(),
        };
        let shown_by = if !args.no_trunc && created_by.chars().count() > 45 {
            format!("{}...", created_by.chars().take(42).collect::<String>())
        } else {
            created_by.clone()
        };
        out.push(json!({
            "id": id,
            "ID": id,
            "created": super::imageutil::rfc3339(created),
            "Created": if args.human { since(created) } else { super::imageutil::rfc3339(created) },
            "CreatedAt": format::go_time(created),
            "CreatedSince": since(created),
            "CreatedBy": shown_by,
            "size": size,
            "Size": if args.human { human_size(size) } else { size.to_string() },
            "Comment": comment,
            "comment": comment,
            "Tags": if i == 0 { json!(image.names) } else { json!([]) },
        }));
    }
    let template = match (&args.format, args.quiet) {
        (Some(f), _) if f != "json" => f.clone(),
        (Some(_), _) => {
            let items: Vec<Value> = out
                .iter()
                .map(|r| {
                    let mut v = json!({"id": r["id"], "created": r["created"], "CreatedBy": r["CreatedBy"], "size": r["size"]});
                    if r["comment"] != "" {
                        v["comment"] = r["comment"].clone();
                    }
                    v
                })
                .collect();
            println!("{}", format::to_json(&Value::Array(items), true));
            return Ok(0);
        }
        (None, true) => "{{.ID}}".into(),
        (None, false) => "table {{.ID}}\t{{.Created}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}".into(),
    };
    let headers = [("CreatedBy", "CREATED BY")];
    format::print(&Format::parse(&template)?, &out, &headers)?;
    Ok(0)
}
