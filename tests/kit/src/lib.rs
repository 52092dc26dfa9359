//! Test support for flatmachines (not published), shared by the runtime's integration tests
//! and the `flatmachines-tests` crate:
//!
//! - [`FnAdapter`]: agent adapters whose agents answer with a function, with constructors for
//!   echo, scripted, failing and slow agents and modifiers for flaky, delayed and priced ones;
//! - [`TempDir`]: a unique temporary directory removed on drop;
//! - [`FakeLlm`]: a scripted OpenAI-compatible chat-completions server on 127.0.0.1;
//! - [`RawHttp`]: a server on 127.0.0.1 whose replies a test writes byte by byte (garbage,
//!   endless bodies, resets, silence);
//! - [`ScriptedServer`]: a server on 127.0.0.1 that records requests and answers with scripted
//!   replies in any provider's wire format (JSON, SSE or NDJSON streams).
//!
//! It depends on `flatmachines` without its default features, so using it as a
//! dev-dependency of the runtime does not turn features on in the runtime's own builds.

pub mod adapter;
pub mod fake_llm;
pub mod raw_http;
pub mod scripted;
pub mod temp;

pub use adapter::{Call, FnAdapter, Reply};
pub use fake_llm::FakeLlm;
pub use raw_http::{Conn, RawHttp};
pub use scripted::{Request, Response, ScriptedServer};
pub use temp::TempDir;
