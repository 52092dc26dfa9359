// The initial `context` has the key `product` twice.
//~ ERROR FM0002 machines/duplicate_key.yml:8:5
flatmachines::include_machine!("machines/duplicate_key.yml");

fn main() {
    let _ = duplicate_key::State::ALL;
}
