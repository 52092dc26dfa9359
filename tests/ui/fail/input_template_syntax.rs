// A state `input` template with one closing brace: `{{ context.product | upper }`.
//~ ERROR FM0301 machines/input_template_syntax.yml:14:46
flatmachines::include_machine!("machines/input_template_syntax.yml");

fn main() {
    let _ = input_template_syntax::State::ALL;
}
