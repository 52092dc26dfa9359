// A `machine:` list entry with `input` but no `name`.
//~ ERROR FM0010 machines/missing_field.yml:11:11
flatmachines::include_machine!("machines/missing_field.yml");

fn main() {
    let _ = missing_field::State::ALL;
}
