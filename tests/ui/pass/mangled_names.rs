// Names that are not Rust identifiers are mangled predictably; colliding names are numbered.
flatmachines::include_machine!("./machines/mangled.yml");

use m_2_fast::State;

fn main() {
    assert_eq!(m_2_fast::NAME, "2-fast");
    assert_eq!(
        State::ALL,
        &[
            State::Start,
            State::ExtractTagline,
            State::ExtractTagline2,
            State::Self_,
            State::WriteDraft,
            State::S2ndPass,
            State::Done,
        ]
    );
    // The YAML names are kept for names, Display, FromStr and serde.
    assert_eq!(State::ExtractTagline.name(), "extract_tagline");
    assert_eq!(State::ExtractTagline2.name(), "extractTagline");
    assert_eq!(State::Self_.to_string(), "self");
    assert_eq!(State::S2ndPass.name(), "2nd pass");
    assert_eq!("write-draft".parse::<State>(), Ok(State::WriteDraft));
    assert_eq!(
        "extractTagline".parse::<State>(),
        Ok(State::ExtractTagline2)
    );
    assert_eq!("2nd pass".parse::<State>(), Ok(State::S2ndPass));
    assert!("WriteDraft".parse::<State>().is_err());
    assert_eq!(State::INITIAL, State::Start);
    assert!(State::Done.is_final());
}
