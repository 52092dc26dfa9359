// `spec_version: "9.0.0"`.
//~ ERROR FM0006 machines/unsupported_spec_version.yml:2:15
flatmachines::include_machine!("machines/unsupported_spec_version.yml");

fn main() {
    let _ = unsupported_spec_version::State::ALL;
}
