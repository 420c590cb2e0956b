//! Unit files: a small model that keeps each entry's line (for quadlet's errors), and the
//! units `generate systemd` writes, laid out as Podman's are.

use std::fmt::Write as _;

/// One `Key=Value` line of a unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    /// 1-based line in the file it came from (0 for generated entries).
    pub line: usize,
}

/// A unit file's sections in order; a section may repeat keys (`ExecStartPre=`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFile {
    pub sections: Vec<(String, Vec<Entry>)>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl UnitFile {
    /// Parses systemd's unit syntax: sections, `Key=Value`, `#`/`;` comments, and a trailing
    /// backslash continuing a line. `file` names the file in errors.
    pub fn parse(text: &str, file: &str) -> Result<UnitFile, ParseError> {
        let mut unit = UnitFile::default();
        let mut lines = text.lines().enumerate();
        while let Some((i, raw)) = lines.next() {
            let mut line = raw.trim().to_string();
            let number = i + 1;
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            while line.ends_with('\\') {
                line.pop();
                line.push(' ');
                match lines.next() {
                    Some((_, more)) => line.push_str(more.trim()),
                    None => break,
                }
            }
            let err = |message: String| ParseError {
                file: file.to_string(),
                line: number,
                message,
            };
            if let Some(name) = line.strip_prefix('[') {
                let name = name
                    .strip_suffix(']')
                    .ok_or_else(|| err(format!("malformed section header {line:?}")))?;
                unit.sections.push((name.to_string(), Vec::new()));
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| err(format!("expected Key=Value, found {line:?}")))?;
            let section = unit
                .sections
                .last_mut()
                .ok_or_else(|| err(format!("{:?} is outside any [Section]", key.trim())))?;
            section.1.push(Entry {
                key: key.trim().to_string(),
                value: value.trim().to_string(),
                line: number,
            });
        }
        Ok(unit)
    }

    pub fn section(&self, name: &str) -> Option<&[Entry]> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.as_slice())
    }

    /// Appends `key=value` to `section` (created at the end if missing).
    pub fn add(&mut self, section: &str, key: &str, value: impl Into<String>) {
        let entry = Entry {
            key: key.to_string(),
            value: value.into(),
            line: 0,
        };
        match self.sections.iter_mut().find(|(n, _)| n == section) {
            Some((_, entries)) => entries.push(entry),
            None => self.sections.push((section.to_string(), vec![entry])),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, (name, entries)) in self.sections.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "[{name}]");
            for e in entries {
                let _ = writeln!(out, "{}={}", e.key, e.value);
            }
        }
        out
    }
}

/// Quotes a word for an `Exec*=` line when systemd would split or expand it.
pub fn quote_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@[]{}".contains(&b));
    // burrow's own `--cidfile=%t/%n.ctr-id` keeps its specifiers; anyone else's % is literal.
    let specifiers = word.starts_with("--cidfile=%t/") && !word.contains(' ');
    if plain || specifiers {
        return word.to_string();
    }
    let escaped = word
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "$$")
        .replace('%', "%%");
    format!("\"{escaped}\"")
}

/// An `Exec*=` command line, one option (with its value) per continued line as Podman
/// writes them.
pub fn exec_line(words: &[String]) -> String {
    words.iter().map(|w| quote_word(w)).collect::<Vec<_>>().join(" ")
}

/// What `generate systemd` needs to know of a container.
#[derive(Debug, Clone, Default)]
pub struct ContainerUnitOptions {
    /// The unit's base name without `.service` (`container-web`).
    pub unit_name: String,
    /// The container's name, or id without --name.
    pub container: String,
    /// The burrow binary and global options (`--root`, `--runroot`) every command gets.
    pub burrow: Vec<String>,
    /// For `--new`: the arguments of `run` that create the container, without `run` itself
    /// and the flags the unit sets (-d, --rm, --cidfile, --replace, --sdnotify).
    pub new_run_args: Option<Vec<String>>,
    /// `--sdnotify` for `--new` units: conmon, or container when the container was made
    /// to send READY=1 itself.
    pub sdnotify: String,
    /// Where the monitor writes its pid (`Type=forking` units of existing containers).
    pub pid_file: String,
    /// The directory the runtime state lives in (`RequiresMountsFor=`).
    pub run_root: String,
    pub restart_policy: String,
    pub restart_sec: Option<u32>,
    pub start_timeout: Option<u32>,
    pub stop_timeout: u32,
    pub after: Vec<String>,
    pub wants: Vec<String>,
    pub requires: Vec<String>,
    pub env: Vec<String>,
    /// A template unit (`name@.service`): the instance is in the container's name.
    pub template: bool,
}

/// The Podman restart policies `generate systemd --restart-policy` takes.
pub const RESTART_POLICIES: &[&str] = &[
    "no",
    "on-success",
    "on-failure",
    "on-abnormal",
    "on-watchdog",
    "on-abort",
    "always",
];

/// A container's unit, as `podman generate systemd` writes it.
pub fn container_unit(o: &ContainerUnitOptions, version: &str) -> UnitFile {
    let mut u = UnitFile::default();
    let service = if o.template {
        format!("{}@.service", o.unit_name)
    } else {
        format!("{}.service", o.unit_name)
    };
    u.add("Unit", "Description", format!("burrow {service}"));
    // No Documentation=man:...: `systemd-analyze verify` fails a unit whose man page is
    // not installed, and burrow's pages may not be.
    let mut wants = vec!["network-online.target".to_string()];
    wants.extend(o.wants.iter().cloned());
    let mut after = vec!["network-online.target".to_string()];
    after.extend(o.after.iter().cloned());
    u.add("Unit", "Wants", wants.join(" "));
    u.add("Unit", "After", after.join(" "));
    if !o.requires.is_empty() {
        u.add("Unit", "Requires", o.requires.join(" "));
    }
    u.add("Unit", "RequiresMountsFor", o.run_root.clone());

    u.add("Service", "Environment", "BURROW_SYSTEMD_UNIT=%n");
    for e in &o.env {
        u.add("Service", "Environment", quote_word(e));
    }
    u.add("Service", "Restart", o.restart_policy.clone());
    if let Some(sec) = o.restart_sec {
        u.add("Service", "RestartSec", sec.to_string());
    }
    if let Some(sec) = o.start_timeout {
        u.add("Service", "TimeoutStartSec", sec.to_string());
    }
    u.add("Service", "TimeoutStopSec", (o.stop_timeout + 60).to_string());
    let burrow = |rest: &[&str]| -> String {
        let words: Vec<String> = o
            .burrow
            .iter()
            .cloned()
            .chain(rest.iter().map(|s| s.to_string()))
            .collect();
        exec_line(&words)
    };
    let t = o.stop_timeout.to_string();
    match &o.new_run_args {
        Some(args) => {
            let cidfile = "--cidfile=%t/%n.ctr-id";
            let mut run: Vec<String> = o.burrow.clone();
            run.extend(["run", cidfile, "--rm"].iter().map(|s| s.to_string()));
            let sdnotify = if o.sdnotify.is_empty() {
                "conmon"
            } else {
                &o.sdnotify
            };
            run.push(format!("--sdnotify={sdnotify}"));
            run.extend(["--replace".to_string(), "-d".to_string()]);
            run.extend(args.iter().cloned());
            // As Podman's: an id file left by a killed burrow must not fail the start.
            u.add("Service", "ExecStartPre", "/bin/rm -f %t/%n.ctr-id");
            u.add("Service", "ExecStart", exec_line(&run));
            u.add(
                "Service",
                "ExecStop",
                burrow(&["stop", "--ignore", "-t", &t, cidfile]),
            );
            u.add(
                "Service",
                "ExecStopPost",
                burrow(&["rm", "-f", "--ignore", "-t", &t, cidfile]),
            );
            u.add("Service", "Type", "notify");
            u.add("Service", "NotifyAccess", "all");
        }
        None => {
            u.add("Service", "ExecStart", burrow(&["start", &o.container]));
            u.add("Service", "ExecStop", burrow(&["stop", "-t", &t, &o.container]));
            u.add(
                "Service",
                "ExecStopPost",
                burrow(&["stop", "-t", &t, &o.container]),
            );
            u.add("Service", "PIDFile", o.pid_file.clone());
            u.add("Service", "Type", "forking");
        }
    }
    u.add("Install", "WantedBy", "default.target");
    let _ = version;
    u
}

/// The comment block at the top of a generated unit.
pub fn header(file_name: &str, version: &str) -> String {
    format!("# {file_name}\n# autogenerated by burrow {version}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_comments_and_continuations() {
        let text = "# c\n[Unit]\nDescription=web\n\n[Container]\nImage=bb\nExec=httpd \\\n  -f\n";
        let u = UnitFile::parse(text, "web.container").unwrap();
        let c = u.section("Container").unwrap();
        assert_eq!(c[0].key, "Image");
        assert_eq!(c[1].value, "httpd  -f");
        assert_eq!(c[1].line, 7);
        let e = UnitFile::parse("[A]\nnovalue\n", "x.container").unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.container:2: expected Key=Value, found \"novalue\""
        );
        assert!(UnitFile::parse("Key=1\n", "y").is_err());
    }

    #[test]
    fn quotes_words_systemd_would_split() {
        assert_eq!(quote_word("httpd"), "httpd");
        assert_eq!(quote_word("a b"), "\"a b\"");
        assert_eq!(quote_word("$HOME"), "\"$$HOME\"");
        assert_eq!(quote_word("50%"), "\"50%%\"");
    }

    #[test]
    fn new_units_create_and_remove_the_container() {
        let o = ContainerUnitOptions {
            unit_name: "container-web".into(),
            container: "web".into(),
            burrow: vec!["/usr/bin/burrow".into()],
            new_run_args: Some(vec!["--name".into(), "web".into(), "bb".into()]),
            restart_policy: "on-failure".into(),
            stop_timeout: 10,
            run_root: "/run/user/1000/burrow".into(),
            ..Default::default()
        };
        let text = container_unit(&o, "0").render();
        assert!(text.contains("ExecStart=/usr/bin/burrow run --cidfile=%t/%n.ctr-id --rm --sdnotify=conmon --replace -d --name web bb\n"), "{text}");
        assert!(text.contains("Type=notify\nNotifyAccess=all\n"), "{text}");
        assert!(text.contains("TimeoutStopSec=70\n"), "{text}");
        assert!(text.contains("[Install]\nWantedBy=default.target\n"), "{text}");
    }
}
