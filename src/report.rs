//! How kiln prints an error: its message, then each cause once (`chain`), with `hint:` lines
//! moved to the end (`report`). Libraries return `thiserror` enums whose messages do not repeat
//! their sources; the command line prints `report(&err)` once at the top.

/// `err` and its sources, joined with `: `, skipping sources whose text the previous
/// message already contains.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// [`chain`], with `hint:` lines of any level gathered after the messages, so that a hint
/// written in a step's context ends the report instead of sitting before the cause.
pub fn report(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut hints: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let mut text = Vec::new();
        for line in e.to_string().split('\n') {
            if line.trim_start().starts_with("hint:") {
                hints.push(line.trim_start().to_owned());
            } else {
                text.push(line.to_owned());
            }
        }
        let text = text.join("\n");
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        cur = e.source();
    }
    for h in hints {
        if !out.contains(&h) {
            out.push('\n');
            out.push_str(&h);
        }
    }
    out
}
