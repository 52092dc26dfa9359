// The child machine has a transition to `finsh`: the error points into the child file.
//~ ERROR FM0102 machines/children/broken_child.yml:9:15
flatmachines::include_machine!("machines/child_machine_defect.yml");

fn main() {
    let _ = child_machine_defect::State::ALL;
}
