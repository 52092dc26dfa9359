// The last state has `type: finish` (a typo of `final`), so no state is final.
//~ ERROR FM0106 machines/no_final_state.yml:6:5
flatmachines::include_machine!("machines/no_final_state.yml");

fn main() {
    let _ = no_final_state::State::ALL;
}
