//! Runs a machine compiled into the binary, offline: its agent is the built-in `echo` adapter.

flatmachines::include_machine!("../hello.yml");

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), flatmachines::Error> {
    use slogan_workshop::State;
    println!(
        "machine `{}`: {} states",
        slogan_workshop::NAME,
        State::ALL.len()
    );
    for s in State::ALL {
        println!(
            "  {s:<8} initial={:<5} final={}",
            *s == State::INITIAL,
            s.is_final()
        );
    }
    let rt = flatmachines::Runtime::new();
    let output =
        slogan_workshop::execute(&rt, serde_json::json!({"product": "flatmachines"})).await?;
    println!("output: {output}");
    Ok(())
}
