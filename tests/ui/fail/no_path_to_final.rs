// `ping` and `pong` go to each other unconditionally: a loop with no way out.
//~ ERROR FM0108 machines/no_path_to_final.yml:14:5
flatmachines::include_machine!("machines/no_path_to_final.yml");

fn main() {
    let _ = no_path_to_final::State::Pong.is_final();
}
