// A machine path that does not exist: a plain macro error, and no module.
flatmachines::include_machine!("machines/does_not_exist.yml");

fn main() {}
