//! `runcache-worker`: the queue consumers. Thin: parse, load config, run.

fn main() {
    eprintln!("runcache-worker: coming with the workers issue");
}
