//! Kill tests (`durability.rs`, `process_kills.rs`): child processes of the test binary that
//! acknowledge each call that returned Ok on stdout, line by line, and a parent that reads
//! them and SIGKILLs one child at a random acknowledgement.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ocistore::{Digest, Repository};

/// How long the parent waits for a line from its children before it calls them hung.
const SILENCE: Duration = Duration::from_secs(120);

/// A tiny xorshift generator: enough to vary where the tests kill.
pub struct Rng(pub u64);

impl Rng {
    /// A generator seeded from the time and the process id, and its seed, to print with a
    /// failure.
    pub fn from_time() -> (u64, Rng) {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            ^ u64::from(std::process::id());
        (seed, Rng(seed | 1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// In a child: one line per acknowledged call, `ACK …`.
pub fn ack(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACK {line}").unwrap();
    out.flush().unwrap();
}

/// A child to run: a [`child_test`](super::child_test) command, and whether it works until
/// its stdin closes (`endless`) rather than to its end.
pub struct Worker {
    pub cmd: Command,
    pub endless: bool,
}

/// Which worker to kill, after how many of its acknowledgements: 0 for a random pause (under
/// 300 ms) after its start, while it starts and opens the store.
#[derive(Debug, Clone, Copy)]
pub struct Kill {
    pub worker: usize,
    pub after: u64,
}

/// The children of a run, killed if the parent panics: none outlives its test.
struct Crew(Vec<Child>);

impl Drop for Crew {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Runs `workers` at once, their stderr in `logs/worker-<i>.stderr`, and passes
/// `record(i, line)` each acknowledgement of worker `i`, in its order. `kill`'s worker is
/// SIGKILLed a random pause (under 20 ms) after its `after`-th line, so that the kill lands
/// anywhere in the step that follows; what it said before it died is recorded too. Once it is
/// dead and every worker that is not endless has finished, the endless ones see their stdin
/// close. Panics, with `context`, if a worker other than the victim fails, or the victim ends
/// before its kill.
pub fn run_crew(
    workers: Vec<Worker>,
    kill: Option<Kill>,
    rng: &mut Rng,
    logs: &Path,
    context: &str,
    mut record: impl FnMut(usize, &str),
) {
    let (lines_tx, lines) = mpsc::channel::<(usize, Option<String>)>();
    let mut crew = Crew(Vec::new());
    let mut stdins = Vec::new();
    let mut endless = Vec::new();
    let stderr = |i: usize| logs.join(format!("worker-{i}.stderr"));
    for (i, mut worker) in workers.into_iter().enumerate() {
        let mut child = worker
            .cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr(i)).unwrap())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let tx = lines_tx.clone();
        thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                // The harness may print `test … ... ` on the same line before the first one.
                if let Some((_, a)) = line.split_once("ACK ") {
                    let _ = tx.send((i, Some(a.to_owned())));
                }
            }
            let _ = tx.send((i, None));
        });
        stdins.push(child.stdin.take());
        endless.push(worker.endless);
        crew.0.push(child);
    }
    let failed = |i: usize, what: &str| -> ! {
        panic!(
            "{context}: worker {i} {what}:\n{}",
            std::fs::read_to_string(stderr(i)).unwrap_or_default()
        )
    };
    let (mut seen, mut ended) = (vec![0u64; crew.0.len()], vec![false; crew.0.len()]);
    let mut killed = kill.is_none();
    let mut deadline = kill
        .filter(|k| k.after == 0)
        .map(|_| Instant::now() + Duration::from_micros(rng.below(300_000)));
    while ended.contains(&false) {
        let finite_done = (0..ended.len()).all(|w| endless[w] || ended[w]);
        if killed && finite_done {
            stdins.iter_mut().for_each(|s| drop(s.take()));
        }
        let wait = deadline.map_or(SILENCE, |d| d.saturating_duration_since(Instant::now()));
        let (i, line) = match lines.recv_timeout(wait) {
            Ok(message) => message,
            Err(_) if deadline.is_some() => {
                let victim = kill.unwrap().worker;
                // It may have finished already: then there is nothing to kill.
                if !ended[victim] {
                    crew.0[victim].kill().unwrap(); // SIGKILL
                }
                (killed, deadline) = (true, None);
                continue;
            }
            Err(_) => panic!("{context}: no worker said anything for {SILENCE:?}"),
        };
        match line {
            Some(line) => {
                record(i, &line);
                seen[i] += 1;
                if let Some(k) = kill.filter(|k| k.worker == i && k.after == seen[i]) {
                    thread::sleep(Duration::from_micros(rng.below(20_000)));
                    crew.0[k.worker].kill().unwrap(); // SIGKILL
                    killed = true;
                }
            }
            None => {
                ended[i] = true;
                let status = crew.0[i].wait().unwrap();
                if let Some(k) = kill.filter(|k| k.worker == i) {
                    if seen[i] < k.after {
                        failed(i, &format!("stopped before its kill ({status})"));
                    }
                } else if !status.success() {
                    failed(i, &format!("failed ({status})"));
                }
            }
        }
    }
}

/// A manifest pulls with its digest, and every blob and child it references is readable.
pub fn check_manifest(repo: &Repository, digest: &Digest, context: &str) {
    let name = repo.name();
    let pulled = repo
        .pull(digest.as_str())
        .unwrap_or_else(|e| panic!("{context}: manifest {digest} in {name}: {e}"));
    assert_eq!(&pulled.digest, digest);
    assert_eq!(&digest.algorithm().digest(&pulled.body), digest);
    let body: serde_json::Value = serde_json::from_slice(&pulled.body).unwrap();
    let refs = |key: &str| {
        body[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| Digest::parse(d["digest"].as_str().unwrap()).unwrap())
            .collect::<Vec<_>>()
    };
    for blob in refs("layers").into_iter().chain(
        body["config"]["digest"]
            .as_str()
            .map(|d| d.parse().unwrap()),
    ) {
        let bytes = repo
            .blob(&blob)
            .unwrap_or_else(|e| panic!("{context}: {digest} references {blob}: {e}"));
        assert_eq!(blob.algorithm().digest(&bytes), blob, "{context}");
    }
    for child in refs("manifests") {
        repo.pull(child.as_str())
            .unwrap_or_else(|e| panic!("{context}: index {digest} references {child}: {e}"));
    }
}
