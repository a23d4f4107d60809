//! The live per-blob progress of `ctr images pull` and `ctr content fetch`,
//! as containerd's ctr shows it: one row per blob (resolved / waiting /
//! downloading with a bar and bytes / done / exists) redrawn in place ten
//! times a second on a terminal; without one, a plain line each time a
//! blob changes state.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crated_client::pull::{BlobState, Progress};
use crated_core::descriptor::Descriptor;

use crate::units::bytes_size;

#[derive(Clone)]
struct Row {
    key: String,
    status: &'static str,
    offset: u64,
    total: u64,
}

/// Tracks and prints a pull's progress.
pub struct Tracker {
    start: Instant,
    tty: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    rows: Vec<Row>,
    index: HashMap<String, usize>,
    /// Lines drawn last time, to move the cursor back over.
    drawn: usize,
}

impl Tracker {
    /// A tracker printing to stdout; a terminal gets the live table.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            tty: std::io::stdout().is_terminal(),
            state: Mutex::new(State::default()),
        })
    }

    /// Redraws every 100 ms until the returned handle is aborted.
    pub fn spawn_redraw(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if !self.tty {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                me.draw(false);
            }
        }))
    }

    fn set(&self, key: &str, status: &'static str, offset: u64, total: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let changed = match state.index.get(key).copied() {
            Some(i) => {
                let row = &mut state.rows[i];
                let changed = row.status != status;
                row.status = status;
                row.offset = offset;
                row.total = total;
                changed
            }
            None => {
                let i = state.rows.len();
                state.rows.push(Row {
                    key: key.to_owned(),
                    status,
                    offset,
                    total,
                });
                state.index.insert(key.to_owned(), i);
                true
            }
        };
        if changed && !self.tty {
            println!("{key}: {status}");
        }
    }

    /// Draws the table (a terminal) and, when `last`, the summary line.
    pub fn draw(&self, last: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let elapsed = self.start.elapsed().as_secs_f64();
        let total: u64 = state
            .rows
            .iter()
            .filter(|r| r.status == "downloading" || r.status == "done")
            .map(|r| r.offset)
            .sum();
        let mut out = String::new();
        if self.tty {
            let width = state
                .rows
                .iter()
                .map(|r| r.key.len() + 1)
                .max()
                .unwrap_or(0);
            if state.drawn > 0 {
                out.push_str(&format!("\x1b[{}A", state.drawn));
            }
            for row in &state.rows {
                out.push_str(&format!(
                    "\x1b[2K{:width$} {:<14} {}\n",
                    format!("{}:", row.key),
                    row.status,
                    bar(row)
                ));
            }
            state.drawn = state.rows.len() + 1;
            out.push_str("\x1b[2K");
        }
        if self.tty || last {
            let rate = if elapsed > 0.0 {
                total as f64 / elapsed
            } else {
                0.0
            };
            out.push_str(&format!(
                "elapsed: {elapsed:.1} s\ttotal: {} ({}/s)\n",
                bytes_size(total),
                bytes_size(rate as u64)
            ));
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

fn bar(row: &Row) -> String {
    const WIDTH: u64 = 40;
    let filled = match row.status {
        "done" | "exists" | "resolved" => WIDTH,
        _ if row.total > 0 => (row.offset.min(row.total) * WIDTH) / row.total,
        _ => 0,
    };
    let mut bar = format!(
        "|{}{}|",
        "+".repeat(filled as usize),
        "-".repeat((WIDTH - filled) as usize)
    );
    if row.status == "downloading" {
        bar.push_str(&format!(
            " {}/{}",
            bytes_size(row.offset),
            bytes_size(row.total)
        ));
    }
    bar
}

impl Progress for Tracker {
    fn resolved(&self, reference: &str, target: &Descriptor) {
        self.set(reference, "resolved", target.size, target.size);
    }

    fn blob(&self, key: &str, state: BlobState, offset: u64, total: u64) {
        let status = match state {
            BlobState::Waiting => "waiting",
            BlobState::Downloading => "downloading",
            BlobState::Done => "done",
            BlobState::Exists => "exists",
            BlobState::Skipped => "skipped",
        };
        self.set(key, status, offset, total);
    }
}
