fn main() {
    flatmachines_compiler::build::Builder::new()
        .machine("machines/review.yml")
        .compile()
        .unwrap_or_else(|e| panic!("\n{e}"));
}
