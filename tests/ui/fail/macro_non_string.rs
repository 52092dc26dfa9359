// The argument of `include_machine!` must be a string literal.
flatmachines::include_machine!(machines::review);

fn main() {}
