//! `cargo run -p example-openai -- "added X; fixed Y"` with `OPENAI_API_KEY` set (and
//! `OPENAI_BASE_URL` for a server other than OpenAI's).

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    if std::env::var_os("OPENAI_API_KEY").is_none() {
        eprintln!(
            "set OPENAI_API_KEY (and OPENAI_BASE_URL for a local server such as \
             http://127.0.0.1:8080/v1); `cargo run -p example-hello` runs offline"
        );
        return std::process::ExitCode::from(2);
    }
    let changes = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "Added `flatmachines check`; fixed a crash on empty input".into());
    let rt = flatmachines::Runtime::new();
    match example_openai::write_release_notes(&rt, &changes).await {
        Ok(output) => {
            println!("{output:#}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
