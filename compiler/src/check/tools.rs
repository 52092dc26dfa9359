//! Tool loops and tools: a state's `tool_loop` guardrails, the tool names it allows or denies,
//! the agent it loops with, and an agent's `data.tools` and `data.mcp` blocks (`config.md` §3.5
//! and §10, `execution.md` §9).

use super::templates::{Scope, Templates};
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::load::{LoadedMachine, Project};
use crate::model::agent::AgentDoc;
use crate::model::machine::{AgentRef, State};
use crate::model::read::{Fields, key, wrong_type};
use crate::source::{SourceMap, Span};
use crate::suggest;
use crate::yaml::{Node, Value};

/// Adapter types whose executors cannot run a machine-driven tool loop: smolagents and pi-agent
/// have no `execute_with_tools`; claude-code and codex-cli run their own loop and raise
/// `NotImplementedError` from it (`execution.md` §9, step 2).
pub(crate) const NO_TOOL_LOOP_ADAPTERS: &[&str] =
    &["smolagents", "claude-code", "codex-cli", "pi-agent"];

/// The keys of `data.mcp`.
const MCP_FIELDS: &[&str] = &["servers", "tool_filter", "tool_prompt"];
/// The keys of one MCP server: `command`, `args`, `env`, `cwd` for a stdio server, `url`,
/// `headers` for a streamable HTTP server.
const MCP_SERVER_FIELDS: &[&str] = &[
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "server_url",
    "headers",
    "timeout",
];

/// A value the runtime passes on as text: a string, number or boolean (`8080` → `"8080"`).
fn is_scalar(n: &Node) -> bool {
    matches!(
        n.value,
        Value::Str(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_)
    )
}
/// The keys of `data.mcp.tool_filter`.
const TOOL_FILTER_FIELDS: &[&str] = &["allow", "deny"];

/// Whether `tool_loop` turns the loop on: `true` or a non-empty map (a map is truthy in
/// Python only when it has entries, so `tool_loop: {}` is off, in the reference as in the
/// lowering). Other shapes are type errors (`FM0008`) and count as off here.
pub(crate) fn tool_loop_on(node: &Node) -> bool {
    match &node.value {
        Value::Bool(b) => *b,
        Value::Map(entries) => !entries.is_empty(),
        _ => false,
    }
}

/// Whether state `s` runs a tool loop.
pub(crate) fn runs_tool_loop(s: &State) -> bool {
    s.tool_loop.as_ref().is_some_and(tool_loop_on)
}

/// The checks of one state's `tool_loop`.
pub(crate) fn check_state(
    project: &Project,
    m: &LoadedMachine,
    s: &State,
    diags: &mut Diagnostics,
) {
    let Some(tl) = &s.tool_loop else { return };
    let state = &s.name.value;
    if let Some(entries) = tl.as_map() {
        check_guardrails(entries, state, diags);
    }
    if !tool_loop_on(tl) {
        return;
    }
    if !s.is_final() && s.transitions.is_empty() {
        diags.push(
            Diagnostic::new(
                Code::ToolLoopWithoutTransitions,
                s.name.span,
                format!("tool_loop state `{state}` has no transitions: the loop's result has nowhere to go"),
            )
            .note(tl.span, "the tool loop")
            .help("add `transitions: [{to: <next state>}]`: an unconditional transition is the normal exit after the loop, and conditional ones are also checked after each tool call"),
        );
    }
    let Some(agent_name) = &s.agent else {
        diags.push(
            Diagnostic::new(
                Code::MissingField,
                tl.span,
                format!("state `{state}` has `tool_loop` but no `agent` to run it with; the tool loop is ignored"),
            )
            .help("add `agent: <name>` naming a flatagent with `tools`"),
        );
        return;
    };
    let agents = &m.doc.data.agents;
    // An unknown agent is `FM0201`, reported with the other references.
    let Some(idx) = agents.iter().position(|a| a.name.value == agent_name.value) else {
        return;
    };
    if let AgentRef::Typed { ty, .. } = &agents[idx].reference
        && NO_TOOL_LOOP_ADAPTERS.contains(&ty.value.as_str())
    {
        diags.push(
            Diagnostic::new(
                Code::ToolLoopUnsupported,
                tl.span,
                format!(
                    "state `{state}` runs a tool loop with agent `{}`, a `{}` agent, which cannot run machine-driven tool loops",
                    agent_name.value, ty.value
                ),
            )
            .note(ty.span, format!("agent `{}` is declared with this adapter type", agent_name.value))
            .help(format!(
                "remove `tool_loop` (a `{}` agent runs its own tools in one call), or use a flatagent with `tools`",
                ty.value
            )),
        );
        return;
    }
    let Some(Some(agent_id)) = m.agents.get(idx) else {
        return;
    };
    let agent = &project.agents[agent_id.0].doc;
    if let Some(entries) = tl.as_map() {
        for (k, v) in entries {
            let field = k.key_str().unwrap_or_default();
            if matches!(field.as_str(), "allowed_tools" | "denied_tools") {
                for item in v.as_seq().unwrap_or_default() {
                    if let Value::Str(name) = &item.value {
                        check_tool_name(name, item, &field, state, &agent_name.value, agent, diags);
                    }
                }
            }
        }
    }
}

/// Types and ranges of the guardrails (`config.md` §3.5). A string holding a template or a bare
/// path is rendered at run time (and checked as a template elsewhere); any other string must
/// convert as Python's `int()`/`float()` would convert it.
fn check_guardrails(entries: &[(Node, Node)], state: &str, diags: &mut Diagnostics) {
    for (k, v) in entries {
        let field = k.key_str().unwrap_or_default();
        if v.is_null() {
            continue;
        }
        let what = format!("`{field}` of the `tool_loop` of state `{state}`");
        match field.as_str() {
            "max_turns" | "max_tool_calls" => check_count(&field, v, &what, diags),
            "tool_timeout" | "total_timeout" => check_amount(&field, v, &what, true, diags),
            "max_cost" => check_amount(&field, v, &what, false, diags),
            "allowed_tools" | "denied_tools" => match v.as_seq() {
                Some(items) => {
                    for item in items {
                        if !matches!(item.value, Value::Str(_)) {
                            diags.push(
                                wrong_type(item, &format!("a tool name in {what}"), "a string")
                                    .help("write tool names as strings, e.g. `[get_weather]`"),
                            );
                        }
                    }
                }
                None => {
                    let help = match &v.value {
                        Value::Str(s) => format!("write a list: `{field}: [{s}]`"),
                        _ => format!("write a list of tool names: `{field}: [get_weather]`"),
                    };
                    diags.push(wrong_type(v, &what, "a list of tool names").help(help));
                }
            },
            // Unknown keys are reported when the model is read.
            _ => {}
        }
    }
}

/// Whether a guardrail string is left to run time: a template or a bare path.
fn rendered_at_run_time(s: &str) -> bool {
    Templates::is_template(s) || super::templates::bare_path(s).is_some()
}

/// The value as the YAML wrote it, for messages.
fn spell(v: &Node) -> String {
    match &v.value {
        Value::Str(s) => format!("{s:?}"),
        _ => v.key_str().unwrap_or_else(|| v.kind_name().to_string()),
    }
}

/// `max_turns`, `max_tool_calls`: converted with `int()`, at least 1.
fn check_count(field: &str, v: &Node, what: &str, diags: &mut Diagnostics) {
    let n = match &v.value {
        Value::Int(i) => *i,
        Value::Float(f) if f.is_finite() && f.fract() == 0.0 => *f as i64,
        Value::Float(f) => {
            diags.push(wrong_type(v, what, "an integer").help(format!(
                "`{field}` counts; the reference would truncate {} to {}",
                spell(v),
                f.trunc()
            )));
            return;
        }
        Value::Str(s) if rendered_at_run_time(s) => return,
        Value::Str(s) => match crate::ir::pyfmt::parse_int(s) {
            Some(i) => i,
            None => {
                diags.push(
                    Diagnostic::new(
                        Code::WrongType,
                        v.span,
                        format!("{what} must be an integer or a template, found {}", spell(v)),
                    )
                    .help(format!(
                        "write a number (`{field}: 10`) or a template (`{field}: \"{{{{ context.{field} | int }}}}\"`)"
                    )),
                );
                return;
            }
        },
        _ => {
            diags.push(
                wrong_type(v, what, "an integer or a template")
                    .help(format!("write a number, e.g. `{field}: 10`")),
            );
            return;
        }
    };
    if n < 1 {
        diags.push(
            Diagnostic::new(
                Code::InvalidNumber,
                v.span,
                format!("`{field}: {}` must be at least 1", spell(v)),
            )
            .help(format!("set `{field}` to a positive integer")),
        );
    }
}

/// `tool_timeout`, `total_timeout` (seconds, `> 0`) and `max_cost` (`>= 0`): converted with
/// `float()`.
fn check_amount(field: &str, v: &Node, what: &str, positive: bool, diags: &mut Diagnostics) {
    let example = if positive { "30" } else { "2.0" };
    let x = match &v.value {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Str(s) if rendered_at_run_time(s) => return,
        Value::Str(s) => match crate::ir::pyfmt::parse_float(s) {
            Some(x) => x,
            None => {
                diags.push(
                    Diagnostic::new(
                        Code::WrongType,
                        v.span,
                        format!("{what} must be a number or a template, found {}", spell(v)),
                    )
                    .help(format!(
                        "write a number (`{field}: {example}`) or a template (`{field}: \"{{{{ context.{field} | float }}}}\"`)"
                    )),
                );
                return;
            }
        },
        _ => {
            diags.push(
                wrong_type(v, what, "a number or a template")
                    .help(format!("write a number, e.g. `{field}: {example}`")),
            );
            return;
        }
    };
    let ok = if positive { x > 0.0 } else { x >= 0.0 };
    if !ok {
        let (bound, help) = if positive {
            (
                "greater than 0",
                format!("`{field}` is in seconds, e.g. `{field}: 30`"),
            )
        } else {
            (
                "at least 0",
                format!("`{field}` is the cost the loop may reach; leave it out for no limit"),
            )
        };
        diags.push(
            Diagnostic::new(
                Code::InvalidNumber,
                v.span,
                format!("`{field}: {}` must be {bound}", spell(v)),
            )
            .help(help),
        );
    }
}

/// The tool names an agent declares in `data.tools` (`function.name` of each entry).
pub(crate) fn declared_tools(agent: &AgentDoc) -> Vec<&str> {
    agent
        .tools
        .as_ref()
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.get("function")?.get("name")?.as_str())
        .collect()
}

/// The MCP servers an agent declares: their names and the `servers` map.
fn mcp_servers(agent: &AgentDoc) -> (Vec<String>, Option<&Node>) {
    let servers = agent.mcp.as_ref().and_then(|m| m.get("servers"));
    let names = servers
        .and_then(Node::as_map)
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, _)| k.key_str())
        .collect();
    (names, servers)
}

/// One entry of `allowed_tools`/`denied_tools`: a plain name against `data.tools`, a
/// `server:tool` name against `data.mcp.servers`.
fn check_tool_name(
    name: &str,
    node: &Node,
    field: &str,
    state: &str,
    agent_name: &str,
    agent: &AgentDoc,
    diags: &mut Diagnostics,
) {
    if let Some((server, _)) = name.split_once(':') {
        let (servers, servers_node) = mcp_servers(agent);
        if !servers.iter().any(|s| s == server) {
            diags.push(unknown_server(
                server,
                node.span,
                format!(
                    "`{field}` of state `{state}` names `{name}`, but agent `{agent_name}` declares no MCP server `{server}`"
                ),
                &servers,
                servers_node.map(|n| n.span),
                agent_name,
            ));
        }
        return;
    }
    let declared = declared_tools(agent);
    // With no `data.tools` every tool comes from the runtime, which the compiler cannot see.
    if declared.is_empty() || declared.contains(&name) {
        return;
    }
    let rust = format!("a Rust tool registered on the runtime may provide `{name}`");
    let help = match suggest::did_you_mean(name, declared.iter().copied()) {
        Some(c) => format!("did you mean `{c}`? ({rust})"),
        None => format!("declared tools are: {}; {rust}", declared.join(", ")),
    };
    let mut d = Diagnostic::new(
        Code::UnknownTool,
        node.span,
        format!(
            "`{field}` of state `{state}` names tool `{name}`, which agent `{agent_name}` does not declare in `data.tools`"
        ),
    )
    .help(help);
    if let Some(tools) = &agent.tools {
        d = d.note(tools.span, format!("the tools of agent `{agent_name}`"));
    }
    diags.push(d);
}

/// An unknown MCP server, with a did-you-mean over the declared ones.
fn unknown_server(
    server: &str,
    span: Span,
    message: String,
    servers: &[String],
    servers_span: Option<Span>,
    agent_name: &str,
) -> Diagnostic {
    let help = if servers.is_empty() {
        format!(
            "agent `{agent_name}` declares no MCP servers; declare `{server}` under `data.mcp.servers`"
        )
    } else if server.contains('*') {
        format!(
            "the part before `:` is a server name, not a pattern; write one entry per server: {}",
            servers.join(", ")
        )
    } else {
        suggest::help(server, servers.iter().map(String::as_str))
            .unwrap_or_else(|| format!("its MCP servers are: {}", servers.join(", ")))
    };
    let mut d = Diagnostic::new(Code::UnknownMcpServer, span, message).help(help);
    if let Some(s) = servers_span {
        d = d.note(s, format!("the MCP servers of agent `{agent_name}`"));
    }
    d
}

/// The checks of an agent document's `data.tools` and `data.mcp`.
pub(crate) fn check_agent(
    doc: &AgentDoc,
    name: &str,
    templates: &Templates,
    sources: &SourceMap,
    diags: &mut Diagnostics,
) {
    if let Some(tools) = &doc.tools {
        check_tool_definitions(tools, name, diags);
    }
    if let Some(mcp) = &doc.mcp {
        check_mcp(mcp, name, templates, sources, diags);
    }
}

/// `data.tools`: OpenAI function tools, `{type: function, function: {name, description,
/// parameters}}`; only what the tool loop relies on (a `function` with a `name`) is checked.
fn check_tool_definitions(tools: &Node, agent: &str, diags: &mut Diagnostics) {
    let example = "`- type: function` with `function: {name: get_weather, description: …, parameters: {type: object, properties: {…}}}`";
    let Some(items) = tools.as_seq() else {
        diags.push(
            wrong_type(
                tools,
                &format!("`tools` of agent `{agent}`"),
                "a list of function tools",
            )
            .help(format!("write `tools:` followed by {example} entries")),
        );
        return;
    };
    for item in items {
        if item.as_map().is_none() {
            diags.push(
                wrong_type(item, &format!("a tool of agent `{agent}`"), "a map")
                    .help(format!("write {example}")),
            );
            continue;
        }
        let Some(function) = item.get("function").filter(|f| !f.is_null()) else {
            diags.push(
                Diagnostic::new(
                    Code::MissingField,
                    item.span,
                    format!("a tool of agent `{agent}` has no `function`"),
                )
                .help(format!("write {example}")),
            );
            continue;
        };
        if function.as_map().is_none() {
            diags.push(
                wrong_type(
                    function,
                    &format!("`function` of a tool of agent `{agent}`"),
                    "a map",
                )
                .help("write `function: {name: get_weather, description: …, parameters: {…}}`"),
            );
            continue;
        }
        match function.get("name").filter(|n| !n.is_null()) {
            None => diags.push(
                Diagnostic::new(
                    Code::MissingField,
                    function.span,
                    format!("the `function` of a tool of agent `{agent}` has no `name`"),
                )
                .help("add `name: <tool name>`: the model calls the tool by it"),
            ),
            Some(n) if n.as_str().is_none() => diags.push(wrong_type(
                n,
                &format!("the name of a tool of agent `{agent}`"),
                "a string",
            )),
            Some(_) => {}
        }
    }
}

/// `data.mcp`: `{servers, tool_filter?, tool_prompt}`.
fn check_mcp(
    mcp: &Node,
    agent: &str,
    templates: &Templates,
    sources: &SourceMap,
    diags: &mut Diagnostics,
) {
    let Some(f) = Fields::of(mcp, &format!("`mcp` of agent `{agent}`"), MCP_FIELDS, diags) else {
        return;
    };
    let mut servers: Option<Vec<String>> = None;
    match f.node("servers") {
        None => diags.push(
            Diagnostic::new(
                Code::MissingField,
                mcp.span,
                format!("`mcp` of agent `{agent}` has no `servers`"),
            )
            .help("declare the servers: `servers: {files: {command: npx, args: [\"-y\", \"@modelcontextprotocol/server-filesystem\", \".\"]}}`"),
        ),
        Some(node) => match node.as_map() {
            None => diags.push(
                wrong_type(node, &format!("`mcp.servers` of agent `{agent}`"), "a map of server name to server")
                    .help("write `servers:` followed by `name: {command: …}` or `name: {url: …}` entries"),
            ),
            Some([]) => diags.push(
                Diagnostic::new(
                    Code::MissingField,
                    node.span,
                    format!("`mcp.servers` of agent `{agent}` is empty"),
                )
                .help("declare at least one server, e.g. `files: {command: npx, args: [...]}`, or remove `mcp`"),
            ),
            Some(entries) => {
                for (k, v) in entries {
                    check_server(k, v, agent, diags);
                }
                servers = Some(entries.iter().filter_map(|(k, _)| k.key_str()).collect());
            }
        },
    }
    if let Some(tf) = f.node("tool_filter") {
        check_tool_filter(tf, agent, servers.as_deref(), f.node("servers"), diags);
    }
    if let Some(tp) = f.node("tool_prompt") {
        match &tp.value {
            Value::Str(text) => {
                let site = format!("the `mcp.tool_prompt` of agent `{agent}`");
                let scope = Scope {
                    site: &site,
                    vars: &["tools"],
                    empty: &[],
                    prompt: true,
                };
                templates.check(text, tp, &scope, sources, diags);
            }
            _ => diags.push(
                wrong_type(tp, &format!("`mcp.tool_prompt` of agent `{agent}`"), "a template string")
                    .help("write `tool_prompt: \"{% for tool in tools %}- {{ tool.name }}: {{ tool.description }}\\n{% endfor %}\"`"),
            ),
        }
    }
}

/// One entry of `mcp.servers`: exactly one of `command` (stdio) or `url` (streamable HTTP).
fn check_server(k: &Node, v: &Node, agent: &str, diags: &mut Diagnostics) {
    let server = key(k).value;
    let what = format!("MCP server `{server}` of agent `{agent}`");
    let Some(f) = Fields::of(v, &what, MCP_SERVER_FIELDS, diags) else {
        return;
    };
    let string = |field: &str, diags: &mut Diagnostics| -> Option<&Node> {
        let n = f.node(field)?;
        if n.as_str().is_none() {
            diags.push(
                wrong_type(n, &format!("`{field}` of {what}"), "a string").help(format!(
                    "quote it: `{field}: \"{}\"`",
                    n.key_str().unwrap_or_default()
                )),
            );
        }
        Some(n)
    };
    let command = string("command", diags);
    // `server_url` is the reference's spelling, read when `url` is absent.
    let url = string("url", diags).or_else(|| string("server_url", diags));
    string("cwd", diags);
    if let Some(t) = f.node("timeout") {
        match t.as_f64() {
            None => diags.push(
                wrong_type(t, &format!("`timeout` of {what}"), "a number of seconds")
                    .help("write `timeout: 60`"),
            ),
            Some(secs) if !(secs > 0.0 && secs.is_finite()) => diags.push(
                Diagnostic::new(
                    Code::InvalidNumber,
                    t.span,
                    format!("`timeout` of {what} is {secs}, not a positive number of seconds"),
                )
                .help("the startup of the server and each of its tool calls get this long; write e.g. `timeout: 60`"),
            ),
            Some(_) => {}
        }
    }
    if let Some(u) = url
        && let Some(text) = u.as_str()
        && !Templates::is_template(text)
    {
        let lower = text.trim().to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            diags.push(
                Diagnostic::new(
                    Code::InvalidMcpTransport,
                    u.span,
                    format!("`url` of {what} is `{text}`, not an http:// or https:// address"),
                )
                .help("a `url` server is a streamable HTTP server, e.g. `url: http://127.0.0.1:8931/mcp`; a local program is a stdio server: `command: <program>`"),
            );
        }
    }
    match (command, url) {
        (None, None) => {
            let help = "give `command` for a stdio server (`command: npx`, `args: [...]`) or `url` for a streamable HTTP server (`url: http://127.0.0.1:8931/mcp`)".to_string();
            diags.push(
                Diagnostic::new(
                    Code::MissingField,
                    k.span,
                    format!("{what} has neither `command` nor `url`"),
                )
                .help(help),
            );
        }
        (Some(c), Some(u)) => diags.push(
            Diagnostic::new(
                Code::InvalidMcpTransport,
                u.span,
                format!("{what} has both `command` and `url`"),
            )
            .note(c.span, "the `command`")
            .help("keep `command` for a stdio server or `url` for an HTTP server, not both"),
        ),
        _ => {}
    }
    if let Some(args) = f.node("args") {
        match args.as_seq() {
            Some(items) => {
                for item in items {
                    if !is_scalar(item) {
                        diags.push(
                            wrong_type(
                                item,
                                &format!("an argument in `args` of {what}"),
                                "a string",
                            )
                            .help(format!(
                                "quote it: `\"{}\"`",
                                item.key_str().unwrap_or_default()
                            )),
                        );
                    }
                }
            }
            None => diags.push(
                wrong_type(args, &format!("`args` of {what}"), "a list of strings").help(
                    "write `args: [\"-y\", \"@modelcontextprotocol/server-filesystem\", \".\"]`",
                ),
            ),
        }
    }
    for field in ["env", "headers"] {
        let Some(map) = f.node(field) else { continue };
        match map.as_map() {
            Some(entries) => {
                for (ek, ev) in entries {
                    if !is_scalar(ev) {
                        let name = ek.key_str().unwrap_or_default();
                        diags.push(
                            wrong_type(ev, &format!("`{field}.{name}` of {what}"), "a string")
                                .help(format!(
                                    "quote it: `{name}: \"{}\"`",
                                    ev.key_str().unwrap_or_default()
                                )),
                        );
                    }
                }
            }
            None => diags.push(
                wrong_type(
                    map,
                    &format!("`{field}` of {what}"),
                    "a map of name to string",
                )
                .help(format!("write `{field}: {{NAME: value}}`")),
            ),
        }
    }
    // Fields of the other transport are never read.
    let ignored: &[&str] = match (command, url) {
        (Some(_), None) => &["headers"],
        (None, Some(_)) => &["args", "env", "cwd"],
        _ => &[],
    };
    for field in ignored {
        if let Some((fk, _)) = f.entry(field) {
            let kind = if command.is_some() {
                "a stdio server (`command`)"
            } else {
                "an HTTP server (`url`)"
            };
            diags.push(
                Diagnostic::new(
                    Code::IgnoredField,
                    fk.span,
                    format!("`{field}` of {what} is ignored: it is {kind}"),
                )
                .help("stdio servers take `command`, `args`, `env`, `cwd`; HTTP servers take `url`, `headers`"),
            );
        }
    }
}

/// `mcp.tool_filter`: `allow`/`deny` lists of `server:tool` or `server:*` patterns.
fn check_tool_filter(
    tf: &Node,
    agent: &str,
    servers: Option<&[String]>,
    servers_node: Option<&Node>,
    diags: &mut Diagnostics,
) {
    let what = format!("`mcp.tool_filter` of agent `{agent}`");
    let Some(f) = Fields::of(tf, &what, TOOL_FILTER_FIELDS, diags) else {
        return;
    };
    for field in TOOL_FILTER_FIELDS {
        let Some(list) = f.node(field) else { continue };
        let Some(items) = list.as_seq() else {
            diags.push(
                wrong_type(
                    list,
                    &format!("`{field}` of {what}"),
                    "a list of `server:tool` patterns",
                )
                .help(format!(
                    "write `{field}: [\"files:read_file\", \"search:*\"]`"
                )),
            );
            continue;
        };
        for item in items {
            let Some(pattern) = item.as_str() else {
                diags.push(wrong_type(
                    item,
                    &format!("a pattern in `{field}` of {what}"),
                    "a `server:tool` string",
                ));
                continue;
            };
            match pattern.split_once(':') {
                None => {
                    let example = servers
                        .and_then(|s| s.first())
                        .map_or("files", String::as_str);
                    diags.push(
                        Diagnostic::new(
                            Code::McpPatternWithoutServer,
                            item.span,
                            format!("MCP tool pattern `{pattern}` in `{field}` of {what} has no `server:` part, so it never matches"),
                        )
                        .note(None, "patterns are matched against qualified names `server:tool`")
                        .help(format!("write `{example}:{pattern}`, or `{example}:*` for every tool of a server")),
                    );
                }
                Some((server, _)) => {
                    // Unreadable or empty `servers` are reported already; no cascade here.
                    let Some(servers) = servers else { continue };
                    if !servers.iter().any(|s| s == server) {
                        diags.push(unknown_server(
                            server,
                            item.span,
                            format!("MCP tool pattern `{pattern}` in `{field}` of {what} names server `{server}`, which is not in `mcp.servers`"),
                            servers,
                            servers_node.map(|n| n.span),
                            agent,
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::check::test_support::check_files;
    use crate::diag::JsonDiagnostic;

    /// A machine whose initial state `start` (lines from 9 on, indented by 6) uses the agents
    /// given as lines of `agents:` (indented by 4, from line 6 on).
    fn machine(agents: &str, start: &str) -> String {
        format!(
            "spec: flatmachine
spec_version: \"2.6.0\"
data:
  name: t
  agents:
{agents}
  states:
    start:
      type: initial
{start}
    done:
      type: final
      output: {{ok: true}}
"
        )
    }

    const SCOUT: &str = r#"spec: flatagent
spec_version: "2.6.0"
data:
  name: scout
  model: {provider: openai, name: tl-scout, temperature: 0, _skip_mcp_handler: true}
  system: "You are a trip scout. Use tools when useful."
  user: "Plan a day in {{ input.city }}."
  tools:
    - type: function
      function:
        name: get_weather
        description: "Current weather for a city"
        parameters: {type: object, properties: {city: {type: string}}, required: [city]}
    - type: function
      function:
        name: find_museums
        description: "Museums in a city"
        parameters: {type: object, properties: {city: {type: string}}, required: [city]}
"#;

    /// `SCOUT` with an MCP block (its lines start at 19).
    fn scout_with_mcp(mcp: &str) -> String {
        format!("{SCOUT}  mcp:\n{mcp}")
    }

    const GOOD_MCP: &str = r#"    servers:
      files:
        command: npx
        args: ["-y", "@modelcontextprotocol/server-filesystem", "./docs"]
        env: {KEY: value}
        cwd: ./work
      search:
        url: http://127.0.0.1:8931/mcp
        headers: {Authorization: "Bearer x"}
    tool_filter:
      allow: ["files:read_file", "search:*"]
      deny: ["files:write_file"]
    tool_prompt: |
      {% for tool in tools %}- {{ tool.name }} ({{ tool._server }}): {{ tool.description }}
      {% endfor %}
"#;

    /// A tool-loop state using `scout` with the given extra lines; the codes it reports.
    fn loop_state(extra: &str) -> Vec<String> {
        let m = machine(
            "    scout: ./scout.yml",
            &format!("      agent: scout\n{extra}\n      transitions: [{{to: done}}]"),
        );
        check_files(&[("machine.yml", &m), ("scout.yml", SCOUT)]).0
    }

    const CONFORMANCE: &str = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: tool-loop-basic
  context: {city: "{{ input.city }}"}
  agents: {scout: ./scout.yml}
  states:
    start:
      type: initial
      agent: scout
      tool_loop: true
      input: {city: "{{ context.city }}"}
      output_to_context:
        plan: output.content
        calls: output._tool_calls_count
        turns: output._tool_loop_turns
        cost: output._tool_loop_cost
        stop: output._tool_loop_stop
      transitions: [{to: done}]
    done:
      type: final
      output: {plan: context.plan}
"#;

    #[test]
    fn conformance_style_tool_loop_has_no_diagnostics() {
        let (codes, _) = check_files(&[("machine.yml", CONFORMANCE), ("scout.yml", SCOUT)]);
        assert_eq!(codes, Vec::<String>::new());
        // With a full MCP block too.
        let agent = scout_with_mcp(GOOD_MCP);
        let (codes, _) = check_files(&[("machine.yml", CONFORMANCE), ("scout.yml", &agent)]);
        assert_eq!(codes, Vec::<String>::new());
    }

    #[test]
    fn valid_guardrails_have_no_diagnostics() {
        let codes = loop_state(
            r#"      tool_loop:
        max_turns: 30
        max_tool_calls: " 100 "
        tool_timeout: 60
        total_timeout: 600.5
        max_cost: 0
        allowed_tools: [get_weather, find_museums]
        denied_tools: []"#,
        );
        assert_eq!(codes, Vec::<String>::new());
        // Templates and bare paths are rendered at run time; integral floats convert with int().
        let codes = loop_state(
            r#"      tool_loop:
        max_turns: "{{ context.n | int }}"
        max_tool_calls: context.calls
        tool_timeout: "{{ context.t | float }}"
        total_timeout: "1_000"
        max_cost: "2.5"
        allowed_tools: [get_weather]"#,
        );
        assert_eq!(codes, Vec::<String>::new());
        assert_eq!(
            loop_state("      tool_loop: {max_turns: 5.0}"),
            Vec::<String>::new()
        );
        assert_eq!(loop_state("      tool_loop: false"), Vec::<String>::new());
    }

    #[test]
    fn guardrails_out_of_range() {
        // The `tool_loop` map starts on line 11; its first entry is on line 12.
        let codes = loop_state(
            "      tool_loop:
        max_turns: 0
        max_tool_calls: -1
        tool_timeout: 0
        total_timeout: \"-1\"
        max_cost: -0.5",
        );
        assert_eq!(
            codes,
            [
                "FM0407 machine.yml:12:20",
                "FM0407 machine.yml:13:25",
                "FM0407 machine.yml:14:23",
                "FM0407 machine.yml:15:24",
                "FM0407 machine.yml:16:19",
            ]
        );
        let codes = loop_state("      tool_loop: {tool_timeout: .nan}");
        assert_eq!(codes, ["FM0407 machine.yml:11:33"]);
    }

    #[test]
    fn guardrails_of_the_wrong_type() {
        let codes = loop_state(
            "      tool_loop:
        max_turns: abc
        max_tool_calls: 2.5
        tool_timeout: [1]
        total_timeout: soon
        max_cost: true
        allowed_tools: get_weather
        denied_tools: [1]",
        );
        assert_eq!(
            codes,
            [
                "FM0008 machine.yml:12:20",
                "FM0008 machine.yml:13:25",
                "FM0008 machine.yml:14:23",
                "FM0008 machine.yml:15:24",
                "FM0008 machine.yml:16:19",
                "FM0008 machine.yml:17:24",
                "FM0008 machine.yml:18:24",
            ]
        );
        let (_, diags) = check_files(&[
            (
                "machine.yml",
                &machine(
                    "    scout: ./scout.yml",
                    "      agent: scout\n      tool_loop: {max_turns: abc}\n      transitions: [{to: done}]",
                ),
            ),
            ("scout.yml", SCOUT),
        ]);
        assert_eq!(
            diags[0].message,
            "`max_turns` of the `tool_loop` of state `start` must be an integer or a template, found \"abc\""
        );
        assert_eq!(
            loop_state("      tool_loop: yes please"),
            ["FM0008 machine.yml:11:18"]
        );
        assert_eq!(
            loop_state("      tool_loop: [a]"),
            ["FM0008 machine.yml:11:18"]
        );
        assert_eq!(
            loop_state("      tool_loop: 3"),
            ["FM0008 machine.yml:11:18"]
        );
        // No cascade: a string is only a type error, not also a loop without an agent.
        let m = machine(
            "    scout: ./scout.yml",
            "      agent: scout\n    other:\n      tool_loop: maybe",
        );
        let (codes, _) = check_files(&[("machine.yml", &m), ("scout.yml", SCOUT)]);
        assert_eq!(
            codes,
            [
                "FM0109 machine.yml:8:5",
                "FM0107 machine.yml:11:5",
                "FM0109 machine.yml:11:5",
                "FM0008 machine.yml:12:18",
                "FM0107 machine.yml:13:5",
            ]
        );
    }

    #[test]
    fn unknown_plain_tool_is_a_warning_with_a_suggestion() {
        let (codes, diags) = check_files(&[
            (
                "machine.yml",
                &machine(
                    "    scout: ./scout.yml",
                    "      agent: scout\n      tool_loop: {allowed_tools: [get_wether], denied_tools: [lookup]}\n      transitions: [{to: done}]",
                ),
            ),
            ("scout.yml", SCOUT),
        ]);
        assert_eq!(
            codes,
            ["FM0208 machine.yml:11:35", "FM0208 machine.yml:11:63"]
        );
        assert_eq!(diags[0].severity.as_str(), "warning");
        assert_eq!(
            diags[0].help.as_deref(),
            Some(
                "did you mean `get_weather`? (a Rust tool registered on the runtime may provide `get_wether`)"
            )
        );
        assert_eq!(
            diags[1].help.as_deref(),
            Some(
                "declared tools are: get_weather, find_museums; a Rust tool registered on the runtime may provide `lookup`"
            )
        );
    }

    #[test]
    fn tool_names_are_not_checked_without_declared_tools() {
        let bare = "spec: flatagent\nspec_version: \"2.6.0\"\ndata:\n  model: {provider: openai, name: x}\n  user: hi\n";
        let m = machine(
            "    scout: ./scout.yml",
            "      agent: scout\n      tool_loop: {allowed_tools: [read_file]}\n      transitions: [{to: done}]",
        );
        let (codes, _) = check_files(&[("machine.yml", &m), ("scout.yml", bare)]);
        assert_eq!(codes, Vec::<String>::new());
        // Nor when the agent is not a document the compiler reads.
        let m = machine(
            "    scout: {type: my-adapter}",
            "      agent: scout\n      tool_loop: {allowed_tools: [read_file, \"x:y\"]}\n      transitions: [{to: done}]",
        );
        let (codes, _) = check_files(&[("machine.yml", &m)]);
        assert_eq!(codes, Vec::<String>::new());
    }

    #[test]
    fn mcp_tool_names_are_checked_against_servers() {
        let agent = scout_with_mcp(GOOD_MCP);
        let m = machine(
            "    scout: ./scout.yml",
            "      agent: scout\n      tool_loop: {allowed_tools: [\"files:read_file\", \"search:*\", \"fils:read_file\"]}\n      transitions: [{to: done}]",
        );
        let (codes, diags) = check_files(&[("machine.yml", &m), ("scout.yml", &agent)]);
        assert_eq!(codes, ["FM0209 machine.yml:11:66"]);
        assert_eq!(diags[0].severity.as_str(), "error");
        assert_eq!(diags[0].help.as_deref(), Some("did you mean `files`?"));
        // An agent without MCP servers.
        let (codes, diags) = check_files(&[("machine.yml", &m), ("scout.yml", SCOUT)]);
        assert_eq!(
            codes,
            [
                "FM0209 machine.yml:11:35",
                "FM0209 machine.yml:11:54",
                "FM0209 machine.yml:11:66"
            ]
        );
        assert!(
            diags[0]
                .help
                .as_deref()
                .unwrap()
                .starts_with("agent `scout` declares no MCP servers"),
            "{:?}",
            diags[0].help
        );
    }

    #[test]
    fn tool_loop_on_an_adapter_that_cannot_loop() {
        for ty in ["smolagents", "claude-code", "codex-cli", "pi-agent"] {
            let m = machine(
                &format!("    coder: {{type: {ty}, ref: \"./f.py#build\"}}"),
                "      agent: coder\n      tool_loop: true\n      transitions: [{to: done}]",
            );
            let (codes, _) = check_files(&[("machine.yml", &m)]);
            assert_eq!(codes, ["FM0210 machine.yml:11:18"], "{ty}");
        }
        // Off: no loop, no error.
        let m = machine(
            "    coder: {type: smolagents, ref: \"./f.py#build\"}",
            "      agent: coder\n      tool_loop: false\n      transitions: [{to: done}]",
        );
        assert_eq!(check_files(&[("machine.yml", &m)]).0, Vec::<String>::new());
        // Custom adapters are registered at run time and may loop.
        let m = machine(
            "    coder: {type: my-adapter}",
            "      agent: coder\n      tool_loop: true\n      transitions: [{to: done}]",
        );
        assert_eq!(check_files(&[("machine.yml", &m)]).0, Vec::<String>::new());
        // An inline flatagent loops.
        let inline = "    scout:\n      spec: flatagent\n      spec_version: \"2.6.0\"\n      data: {model: {provider: openai, name: x}, user: hi}";
        let m = machine(
            inline,
            "      agent: scout\n      tool_loop: true\n      transitions: [{to: done}]",
        );
        assert_eq!(check_files(&[("machine.yml", &m)]).0, Vec::<String>::new());
    }

    #[test]
    fn tool_loop_without_agent() {
        let m = machine(
            "    scout: ./scout.yml",
            "      agent: scout\n      transitions: [{to: other}]\n    other:\n      tool_loop: true\n      transitions: [{to: done}]",
        );
        let (codes, diags) = check_files(&[("machine.yml", &m), ("scout.yml", SCOUT)]);
        assert_eq!(codes, ["FM0010 machine.yml:13:18"]);
        assert_eq!(
            diags[0].message,
            "state `other` has `tool_loop` but no `agent` to run it with; the tool loop is ignored"
        );
    }

    #[test]
    fn tool_loop_state_without_transitions() {
        let m = machine(
            "    scout: ./scout.yml",
            "      agent: scout\n      tool_loop: true",
        );
        let (codes, diags) = check_files(&[("machine.yml", &m), ("scout.yml", SCOUT)]);
        // One clear error, not also the dead-end warning FM0109 (`done` is unreachable).
        assert_eq!(codes, ["FM0115 machine.yml:8:5", "FM0107 machine.yml:12:5"]);
        assert_eq!(
            diags[0].message,
            "tool_loop state `start` has no transitions: the loop's result has nowhere to go"
        );
        // With `on_error` too: the loop's normal result still has nowhere to go.
        let m = machine(
            "    scout: ./scout.yml",
            "      agent: scout\n      tool_loop: {max_turns: 3}\n      on_error: done",
        );
        let (codes, _) = check_files(&[("machine.yml", &m), ("scout.yml", SCOUT)]);
        assert_eq!(codes, ["FM0115 machine.yml:8:5"]);
        // Without a loop it is the usual dead-end warning.
        let m = machine(
            "    scout: ./scout.yml",
            "      agent: scout\n      tool_loop: false",
        );
        let (codes, _) = check_files(&[("machine.yml", &m), ("scout.yml", SCOUT)]);
        assert_eq!(codes, ["FM0109 machine.yml:8:5", "FM0107 machine.yml:12:5"]);
        // Conditional transitions only are fine: they are checked after each tool call.
        let m = machine(
            "    scout: ./scout.yml",
            "      agent: scout\n      tool_loop: true\n      transitions: [{condition: \"context.done\", to: done}]",
        );
        let (codes, _) = check_files(&[("machine.yml", &m), ("scout.yml", SCOUT)]);
        assert_eq!(codes, Vec::<String>::new());
    }

    #[test]
    fn conditional_transitions_after_the_exit_are_taken_during_the_loop() {
        let m = machine(
            "    scout: ./scout.yml",
            "      agent: scout
      tool_loop: true
      transitions:
        - to: done
        - condition: \"context._tool_calls_count >= 2\"
          to: escalate
        - to: never
    escalate:
      type: final
      output: {escalated: true}
    never:
      type: final
      output: {never: true}",
        );
        let (codes, _) = check_files(&[("machine.yml", &m), ("scout.yml", SCOUT)]);
        // The conditional one is an exit after a tool call; the second unconditional one is
        // never taken (and `never` is unreachable).
        assert_eq!(
            codes,
            ["FM0110 machine.yml:16:11", "FM0107 machine.yml:20:5"]
        );
        // Without the loop, the conditional transition is shadowed too.
        let m = m.replace("tool_loop: true", "tool_loop: false");
        let (codes, _) = check_files(&[("machine.yml", &m), ("scout.yml", SCOUT)]);
        assert_eq!(
            codes,
            [
                "FM0110 machine.yml:14:11",
                "FM0110 machine.yml:16:11",
                "FM0107 machine.yml:17:5",
                "FM0107 machine.yml:20:5",
            ]
        );
    }

    #[test]
    fn output_fields_are_checked_unless_the_state_loops() {
        let otc = "      output_to_context: {n: output._tool_calls_count}\n      transitions: [{to: done}]";
        let m = machine(
            "    scout: ./scout.yml",
            &format!("      agent: scout\n      tool_loop: true\n{otc}"),
        );
        let (codes, _) = check_files(&[("machine.yml", &m), ("scout.yml", SCOUT)]);
        assert_eq!(codes, Vec::<String>::new());
        let m = machine(
            "    scout: ./scout.yml",
            &format!("      agent: scout\n      tool_loop: false\n{otc}"),
        );
        let (codes, _) = check_files(&[("machine.yml", &m), ("scout.yml", SCOUT)]);
        assert_eq!(codes, ["FM0205 machine.yml:12:30"]);
    }

    /// Diagnostics of an agent `scout` with the given MCP block, used by a plain state.
    fn mcp_codes(mcp: &str) -> (Vec<String>, Vec<JsonDiagnostic>) {
        let m = machine(
            "    scout: ./scout.yml",
            "      agent: scout\n      transitions: [{to: done}]",
        );
        let agent = scout_with_mcp(mcp);
        check_files(&[("machine.yml", &m), ("scout.yml", &agent)])
    }

    #[test]
    fn valid_mcp_block_has_no_diagnostics() {
        assert_eq!(mcp_codes(GOOD_MCP).0, Vec::<String>::new());
        assert_eq!(
            mcp_codes("    servers: {s: {url: \"{{ env.URL }}\"}}\n").0,
            Vec::<String>::new()
        );
    }

    #[test]
    fn mcp_servers_shape() {
        // The `mcp` map starts on line 19.
        assert_eq!(
            mcp_codes("    tool_prompt: x\n").0,
            ["FM0010 scout.yml:20:5"]
        );
        assert_eq!(mcp_codes("    servers: {}\n").0, ["FM0010 scout.yml:20:14"]);
        assert_eq!(
            mcp_codes("    servers: [a]\n").0,
            ["FM0008 scout.yml:20:14"]
        );
        let m = machine(
            "    scout: ./scout.yml",
            "      agent: scout\n      transitions: [{to: done}]",
        );
        let agent = format!("{SCOUT}  mcp: [a]\n");
        let (codes, _) = check_files(&[("machine.yml", &m), ("scout.yml", &agent)]);
        assert_eq!(codes, ["FM0008 scout.yml:19:8"]);
        let (codes, diags) = mcp_codes(
            "    servers:
      none: {args: [a]}
      both: {command: npx, url: http://x}
      ftp: {url: ftp://x}
      typo: {comand: npx}
      old: {server_url: http://x}
      nums: {command: npx, args: [\"--port\", 8080], env: {PORT: 8080}, cwd: 3}
      shapes: {command: npx, args: -y, env: [a], headers: {A: b}}
      web: {url: https://x, headers: {Authorization: [x]}, env: {A: b}}
      slow: {command: npx, timeout: 0}
      soon: {command: npx, timeout: soon}
",
        );
        assert_eq!(
            codes,
            [
                "FM0010 scout.yml:21:7",
                "FM0409 scout.yml:22:33",
                "FM0409 scout.yml:23:18",
                "FM0010 scout.yml:24:7",
                "FM0501 scout.yml:24:14",
                // `server_url` (25) is the reference's spelling; numbers in `args` and `env`
                // (26) are passed on as text, as the runtime does.
                "FM0008 scout.yml:26:76",
                "FM0008 scout.yml:27:36",
                "FM0008 scout.yml:27:45",
                "FM0502 scout.yml:27:50",
                "FM0008 scout.yml:28:54",
                "FM0502 scout.yml:28:60",
                "FM0407 scout.yml:29:37",
                "FM0008 scout.yml:30:37",
            ]
        );
        let by = |code: &str, line: u32| {
            diags
                .iter()
                .find(|d| d.code == code && d.line == Some(line))
                .unwrap()
        };
        assert_eq!(
            by("FM0501", 24).help.as_deref(),
            Some("did you mean `command`?")
        );
        assert_eq!(
            by("FM0409", 22).message,
            "MCP server `both` of agent `scout` has both `command` and `url`"
        );
    }

    #[test]
    fn mcp_tool_filter_patterns() {
        let (codes, diags) = mcp_codes(
            "    servers: {files: {command: npx}, search: {url: http://x}}
    tool_filter:
      allow: [\"files:read_file\", \"search:*\", read_file, \"serch:*\", \"*:read_file\"]
      deny: files:write_file
",
        );
        assert_eq!(
            codes,
            [
                "FM0408 scout.yml:22:46",
                "FM0209 scout.yml:22:57",
                "FM0209 scout.yml:22:68",
                "FM0008 scout.yml:23:13",
            ]
        );
        assert_eq!(
            diags[0].help.as_deref(),
            Some("write `files:read_file`, or `files:*` for every tool of a server")
        );
        assert_eq!(diags[1].help.as_deref(), Some("did you mean `search`?"));
        // No cascade when `servers` is unreadable; unknown filter keys are warnings.
        let (codes, _) = mcp_codes(
            "    servers: oops
    tool_filter: {allow: [\"a:b\"], block: [x]}
",
        );
        assert_eq!(codes, ["FM0008 scout.yml:20:14", "FM0501 scout.yml:21:35"]);
    }

    #[test]
    fn mcp_tool_prompt_is_a_template_over_tools() {
        let servers = "    servers: {files: {command: npx}}\n";
        let (codes, _) = mcp_codes(&format!(
            "{servers}    tool_prompt: \"{{{{ tools | length }}\"\n"
        ));
        assert_eq!(codes, ["FM0301 scout.yml:21:37"]);
        let (codes, _) = mcp_codes(&format!(
            "{servers}    tool_prompt: \"{{{{ input.city }}}}\"\n"
        ));
        assert_eq!(codes, ["FM0309 scout.yml:21:18"]);
        let (codes, _) = mcp_codes(&format!("{servers}    tool_prompt: [x]\n"));
        assert_eq!(codes, ["FM0008 scout.yml:21:18"]);
    }

    #[test]
    fn tool_definitions_shape() {
        let agent = |tools: &str| {
            format!(
                "spec: flatagent\nspec_version: \"2.6.0\"\ndata:\n  model: {{provider: openai, name: x}}\n  user: hi\n  tools: {tools}\n"
            )
        };
        let m = machine(
            "    scout: ./scout.yml",
            "      agent: scout\n      transitions: [{to: done}]",
        );
        let codes =
            |tools: &str| check_files(&[("machine.yml", &m), ("scout.yml", &agent(tools))]).0;
        assert_eq!(codes("{a: 1}"), ["FM0008 scout.yml:6:10"]);
        assert_eq!(codes("[x]"), ["FM0008 scout.yml:6:11"]);
        assert_eq!(codes("[{type: function}]"), ["FM0010 scout.yml:6:11"]);
        assert_eq!(
            codes("[{type: function, function: {description: d}}]"),
            ["FM0010 scout.yml:6:38"]
        );
        assert_eq!(
            codes("[{type: function, function: {name: [x]}}]"),
            ["FM0008 scout.yml:6:45"]
        );
        assert_eq!(
            codes("[{type: function, function: {name: ok}}]"),
            Vec::<String>::new()
        );
    }
}
