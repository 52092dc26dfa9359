flatmachines::include_machine!("../hello.yml");

fn main() {
    use slogan_workshop::State;
    println!(
        "machine `{}` has {} states",
        slogan_workshop::NAME,
        State::ALL.len()
    );
    for s in State::ALL {
        println!(
            "  {s:<8} initial={} final={}",
            *s == State::INITIAL,
            s.is_final()
        );
    }
    let parsed: State = "write".parse().unwrap();
    assert_eq!(parsed, State::Write);
}
