// A `|` block scalar whose second line has `{% endfi %}`: the position is on that line.
//~ ERROR FM0301 machines/block_scalar_template_syntax.yml:16:50
flatmachines::include_machine!("machines/block_scalar_template_syntax.yml");

fn main() {
    let _ = block_scalar_template_syntax::State::ALL;
}
