//! The IR as Rust data: a constant expression for every [`ir`] value, so a compiled machine's
//! definition is a `static` that needs no parsing when the program starts.

use crate::ir::{self, Json};
use proc_macro2::{Literal, TokenStream};
use quote::quote;

fn s(text: &str) -> TokenStream {
    let lit = Literal::string(text);
    quote!(::flatmachines::__private::Cow::Borrowed(#lit))
}

fn list(items: impl IntoIterator<Item = TokenStream>) -> TokenStream {
    let items = items.into_iter();
    quote!(::flatmachines::__private::Cow::Borrowed(&[#(#items),*]))
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> TokenStream) -> TokenStream {
    match v {
        Some(v) => {
            let v = f(v);
            quote!(::core::option::Option::Some(#v))
        }
        None => quote!(::core::option::Option::None),
    }
}

fn f64_lit(f: f64) -> TokenStream {
    if f.is_finite() {
        let lit = Literal::f64_suffixed(f);
        quote!(#lit)
    } else if f.is_nan() {
        quote!(::core::f64::NAN)
    } else if f > 0.0 {
        quote!(::core::f64::INFINITY)
    } else {
        quote!(::core::f64::NEG_INFINITY)
    }
}

fn u32_lit(n: u32) -> Literal {
    Literal::u32_suffixed(n)
}

/// A [`Json`] value.
pub(super) fn json(v: &Json) -> TokenStream {
    let p = quote!(::flatmachines::__private::ir::Json);
    match v {
        Json::Null => quote!(#p::Null),
        Json::Bool(b) => quote!(#p::Bool(#b)),
        Json::Int(i) => {
            let lit = Literal::i64_suffixed(*i);
            quote!(#p::Int(#lit))
        }
        Json::UInt(u) => {
            let lit = Literal::u64_suffixed(*u);
            quote!(#p::UInt(#lit))
        }
        Json::Float(f) => {
            let lit = f64_lit(*f);
            quote!(#p::Float(#lit))
        }
        Json::Str(t) => {
            let t = s(t);
            quote!(#p::Str(#t))
        }
        Json::Array(items) => {
            let items = list(items.iter().map(json));
            quote!(#p::Array(#items))
        }
        Json::Object(entries) => {
            let entries = list(entries.iter().map(|(k, v)| {
                let (k, v) = (s(k), json(v));
                quote!((#k, #v))
            }));
            quote!(#p::Object(#entries))
        }
    }
}

/// The whole bundle.
pub(super) fn bundle(b: &ir::Bundle) -> TokenStream {
    let machines = list(b.machines.iter().map(machine));
    let profiles = list(b.profiles.iter().map(json));
    quote!(::flatmachines::__private::ir::Bundle {
        machines: #machines,
        profiles: #profiles,
    })
}

fn machine(m: &ir::MachineIr) -> TokenStream {
    let p = quote!(::flatmachines::__private::ir);
    let name = s(&m.name);
    let spec_version = s(&m.spec_version);
    let path = opt(m.path.as_deref(), s);
    let dir = s(&m.dir);
    let engine = match m.engine {
        ir::Engine::Simple => quote!(#p::Engine::Simple),
        ir::Engine::Cel => quote!(#p::Engine::Cel),
    };
    let context = json(&m.context);
    let settings = json(&m.settings);
    let max_steps = opt(m.limits.max_steps, |n| {
        let lit = Literal::u64_suffixed(n);
        quote!(#lit)
    });
    let max_children = opt(m.limits.max_concurrent_children, |n| {
        let lit = u32_lit(n);
        quote!(#lit)
    });
    let hooks = opt(m.hooks.as_ref(), json);
    let states = list(m.states.iter().map(state));
    let initial = u32_lit(m.initial);
    let conditions = list(m.conditions.iter().map(|c| s(c)));
    let agents = list(m.agents.iter().map(agent));
    let profiles = opt(m.profiles, |i| {
        let lit = u32_lit(i);
        quote!(#lit)
    });
    let persistence = persistence(&m.persistence);
    let machines = list(m.machines.iter().map(child));
    let document = s(&m.document);
    quote!(#p::MachineIr {
        name: #name,
        spec_version: #spec_version,
        path: #path,
        dir: #dir,
        engine: #engine,
        context: #context,
        settings: #settings,
        limits: #p::Limits { max_steps: #max_steps, max_concurrent_children: #max_children },
        hooks: #hooks,
        states: #states,
        initial: #initial,
        conditions: #conditions,
        agents: #agents,
        profiles: #profiles,
        persistence: #persistence,
        machines: #machines,
        document: #document,
    })
}

fn state(st: &ir::StateIr) -> TokenStream {
    let p = quote!(::flatmachines::__private::ir);
    let name = s(&st.name);
    let is_final = st.is_final;
    let agent = opt(st.agent.as_deref(), s);
    let execution = execution(&st.execution);
    let tool_loop = opt(st.tool_loop.as_ref(), tool_loop);
    let input = opt(st.input.as_ref(), json);
    let otc = list(st.output_to_context.iter().map(|(k, v)| {
        let (k, v) = (s(k), json(v));
        quote!((#k, #v))
    }));
    let output = opt(st.output.as_ref(), json);
    let transition = |t: &ir::Transition| {
        let condition = opt(t.condition, |c| {
            let lit = u32_lit(c);
            quote!(#lit)
        });
        let target = u32_lit(t.target);
        quote!(#p::Transition { condition: #condition, target: #target })
    };
    let transitions = list(st.transitions.iter().map(transition));
    let loop_exits = list(st.loop_exits.iter().map(transition));
    let on_error = opt(st.on_error.as_ref(), |o| match o {
        ir::OnError::State(t) => {
            let t = u32_lit(*t);
            quote!(#p::OnError::State(#t))
        }
        ir::OnError::Map(m) => {
            let entries = list(m.iter().map(|(k, t)| {
                let (k, t) = (s(k), u32_lit(*t));
                quote!((#k, #t))
            }));
            quote!(#p::OnError::Map(#entries))
        }
    });
    let action = opt(st.action.as_deref(), s);
    let wait_for = opt(st.wait_for.as_ref(), json);
    let call = opt(st.call.as_ref(), |c| match c {
        ir::Call::Single(n) => {
            let n = s(n);
            quote!(#p::Call::Single(#n))
        }
        ir::Call::List(l) => {
            let entries = list(l.iter().map(|(n, i)| {
                let (n, i) = (s(n), opt(i.as_ref(), json));
                quote!((#n, #i))
            }));
            quote!(#p::Call::List(#entries))
        }
        ir::Call::Foreach {
            items,
            item,
            key,
            machine,
        } => {
            let (items, item, key, machine) =
                (json(items), s(item), opt(key.as_ref(), json), s(machine));
            quote!(#p::Call::Foreach { items: #items, item: #item, key: #key, machine: #machine })
        }
    });
    let mode = match st.mode {
        ir::Mode::Settled => quote!(#p::Mode::Settled),
        ir::Mode::Any => quote!(#p::Mode::Any),
    };
    let timeout = opt(st.timeout, f64_lit);
    let launch = list(st.launch.iter().map(|l| s(l)));
    let launch_input = opt(st.launch_input.as_ref(), json);
    quote!(#p::StateIr {
        name: #name,
        is_final: #is_final,
        agent: #agent,
        execution: #execution,
        tool_loop: #tool_loop,
        loop_exits: #loop_exits,
        input: #input,
        output_to_context: #otc,
        output: #output,
        transitions: #transitions,
        on_error: #on_error,
        action: #action,
        wait_for: #wait_for,
        call: #call,
        mode: #mode,
        timeout: #timeout,
        launch: #launch,
        launch_input: #launch_input,
    })
}

fn tool_loop(t: &ir::ToolLoop) -> TokenStream {
    let p = quote!(::flatmachines::__private::ir);
    let guard = |g: &ir::Guard| match g {
        ir::Guard::Number(n) => {
            let n = f64_lit(*n);
            quote!(#p::Guard::Number(#n))
        }
        ir::Guard::Template(t) => {
            let t = s(t);
            quote!(#p::Guard::Template(#t))
        }
    };
    let (max_turns, max_tool_calls) = (guard(&t.max_turns), guard(&t.max_tool_calls));
    let (tool_timeout, total_timeout) = (guard(&t.tool_timeout), guard(&t.total_timeout));
    let max_cost = opt(t.max_cost.as_ref(), guard);
    let allowed = list(t.allowed_tools.iter().map(|n| s(n)));
    let denied = list(t.denied_tools.iter().map(|n| s(n)));
    quote!(#p::ToolLoop {
        max_turns: #max_turns,
        max_tool_calls: #max_tool_calls,
        tool_timeout: #tool_timeout,
        total_timeout: #total_timeout,
        max_cost: #max_cost,
        allowed_tools: #allowed,
        denied_tools: #denied,
    })
}

fn execution(e: &ir::Execution) -> TokenStream {
    let p = quote!(::flatmachines::__private::ir::Execution);
    match e {
        ir::Execution::Default => quote!(#p::Default),
        ir::Execution::Retry {
            backoffs,
            jitter,
            retry_on_empty,
        } => {
            let backoffs = list(backoffs.iter().map(|b| f64_lit(*b)));
            let jitter = f64_lit(*jitter);
            quote!(#p::Retry { backoffs: #backoffs, jitter: #jitter, retry_on_empty: #retry_on_empty })
        }
        ir::Execution::Parallel { n_samples } => {
            let n = u32_lit(*n_samples);
            quote!(#p::Parallel { n_samples: #n })
        }
        ir::Execution::MdapVoting {
            k_margin,
            max_candidates,
            max_response_tokens,
        } => {
            let (k, m) = (u32_lit(*k_margin), u32_lit(*max_candidates));
            let t = opt(*max_response_tokens, |t| {
                let lit = u32_lit(t);
                quote!(#lit)
            });
            quote!(#p::MdapVoting { k_margin: #k, max_candidates: #m, max_response_tokens: #t })
        }
    }
}

fn agent(a: &ir::Agent) -> TokenStream {
    let (name, ty, dir) = (s(&a.name), s(&a.ty), s(&a.dir));
    let reference = opt(a.reference.as_deref(), s);
    let config = opt(a.config.as_ref(), json);
    let profiles = opt(a.profiles, |i| {
        let lit = u32_lit(i);
        quote!(#lit)
    });
    quote!(::flatmachines::__private::ir::Agent {
        name: #name,
        ty: #ty,
        reference: #reference,
        config: #config,
        dir: #dir,
        profiles: #profiles,
    })
}

fn persistence(p: &ir::Persistence) -> TokenStream {
    let ir_path = quote!(::flatmachines::__private::ir);
    let enabled = p.enabled;
    let backend = match p.backend {
        ir::Backend::Memory => quote!(#ir_path::Backend::Memory),
        ir::Backend::Local => quote!(#ir_path::Backend::Local),
        ir::Backend::Sqlite => quote!(#ir_path::Backend::Sqlite),
    };
    let db_path = opt(p.db_path.as_deref(), s);
    let checkpoint_on = opt(p.checkpoint_on.as_ref(), |l| list(l.iter().map(|e| s(e))));
    let config = s(&p.config);
    quote!(#ir_path::Persistence {
        enabled: #enabled,
        backend: #backend,
        db_path: #db_path,
        checkpoint_on: #checkpoint_on,
        config: #config,
    })
}

fn child(c: &ir::Child) -> TokenStream {
    let name = s(&c.name);
    let path = opt(c.path.as_deref(), s);
    let inline = opt(c.inline.as_ref(), json);
    let machine = opt(c.machine, |i| {
        let lit = u32_lit(i);
        quote!(#lit)
    });
    quote!(::flatmachines::__private::ir::Child {
        name: #name,
        path: #path,
        inline: #inline,
        machine: #machine,
    })
}
