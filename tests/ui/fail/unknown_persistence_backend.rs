// `persistence: {backend: sqlite3}`.
//~ ERROR FM0406 machines/unknown_persistence_backend.yml:7:14
flatmachines::include_machine!("machines/unknown_persistence_backend.yml");

fn main() {
    let _ = unknown_persistence_backend::State::ALL;
}
