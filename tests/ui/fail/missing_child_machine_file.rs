// `machines:` points at `./children/chld.yml`, which does not exist (`child.yml` does).
//~ ERROR FM0003 machines/missing_child_machine_file.yml:6:12
flatmachines::include_machine!("machines/missing_child_machine_file.yml");

fn main() {
    let _ = missing_child_machine_file::State::ALL;
}
