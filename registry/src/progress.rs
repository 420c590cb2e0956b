//! What a pull or push shows on stderr: a bar per blob on a terminal, Podman's plain
//! lines otherwise, nothing with `-q`.

use std::io::{IsTerminal, Read};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub enum Progress {
    Quiet,
    Lines,
    Bars(MultiProgress),
}

/// One blob's progress.
pub struct Item {
    bar: Option<(ProgressBar, MultiProgress)>,
    label: String,
    lines: bool,
}

impl Progress {
    /// Bars when stderr is a terminal, else lines; `quiet` silences both.
    pub fn new(quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            // indicatif draws nothing on a terminal it deems dumb (TERM=dumb or unset).
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            if multi.is_hidden() {
                Progress::Lines
            } else {
                Progress::Bars(multi)
            }
        } else {
            Progress::Lines
        }
    }

    /// A plain message (`Trying to pull ...`).
    pub fn say(&self, msg: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Lines => eprintln!("{msg}"),
            Progress::Bars(m) => {
                let _ = m.println(msg);
            }
        }
    }

    /// Starts showing the transfer of a blob (`Copying blob 1a2b3c4d5e6f`).
    pub fn item(&self, what: &str, digest: &str, size: Option<u64>) -> Item {
        let short = digest.trim_start_matches("sha256:");
        let label = format!("Copying {what} {}", &short[..short.len().min(12)]);
        match self {
            Progress::Quiet => Item {
                bar: None,
                label,
                lines: false,
            },
            Progress::Lines => Item {
                bar: None,
                label,
                lines: true,
            },
            Progress::Bars(m) => {
                let bar = m.add(ProgressBar::new(size.unwrap_or(0)));
                bar.set_style(
                    ProgressStyle::with_template("{msg} {bar:30} {bytes} / {total_bytes} {bytes_per_sec}")
                        .expect("a valid template")
                        .progress_chars("=> "),
                );
                bar.set_message(label.clone());
                Item {
                    bar: Some((bar, m.clone())),
                    label,
                    lines: false,
                }
            }
        }
    }
}

impl Item {
    /// Wraps a reader so that what it reads advances the bar.
    pub fn reader<R: Read>(&self, inner: R) -> Counted<'_, R> {
        Counted { inner, item: self }
    }

    pub fn done(self, note: &str) {
        if let Some((bar, multi)) = &self.bar {
            // A finished transfer leaves one plain line above the bars, as Podman's.
            bar.finish_and_clear();
            multi.remove(bar);
            let _ = multi.println(format!("{} {note}", self.label));
        } else if self.lines {
            eprintln!("{} {note}", self.label);
        }
    }
}

pub struct Counted<'a, R> {
    inner: R,
    item: &'a Item,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some((bar, _)) = &self.item.bar {
            bar.inc(n as u64);
        }
        Ok(n)
    }
}
