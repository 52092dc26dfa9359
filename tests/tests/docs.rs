//! The documentation lists every diagnostic code with its severity and summary.

use flatmachines_compiler::diag::Code;

#[test]
fn diagnostics_doc_lists_every_code() {
    let doc = include_str!("../../docs/diagnostics.md");
    for code in Code::ALL {
        let row = format!(
            "| `{}` | {} | {} |",
            code.as_str(),
            code.severity().as_str(),
            code.summary()
        );
        assert!(
            doc.contains(&row),
            "docs/diagnostics.md lacks or misstates:\n{row}"
        );
    }
}
