//! Check 12, second half: well-known first lines of an app's output and
//! their fixes (Werkzeug's development server, Flask-SocketIO's refusal to
//! run it, a missing module, an address already in use).

use super::python::Installation;
use super::report::Status;

pub const NAME: &str = "output";

/// One recognised line: status, what it means, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub status: Status,
    pub message: String,
    pub fix: String,
}

const WAITRESS: &str = "serve it with waitress: arguments=\"-m waitress --listen 127.0.0.1:%HTTP_PLATFORM_PORT% wsgi:application\" (pip install waitress), or with gunicorn on Linux";

/// Everything recognised in `output`, most severe first.
pub fn recognize(output: &str, python: Option<&Installation>) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut add = |status, message: String, fix: &str| {
        found.push(Finding {
            status,
            message,
            fix: fix.to_string(),
        })
    };
    if output.contains("Werkzeug web server is not designed to run in production") {
        add(
            Status::Failure,
            "Flask-SocketIO refused to start: \"The Werkzeug web server is not designed to run in production\" (it refuses when stdin is not a terminal, as under hpgate or IIS)".into(),
            "pass allow_unsafe_werkzeug=True to socketio.run() for a small internal site, or use a production server (eventlet, gevent, or gunicorn with one of their workers; waitress carries long-polling only)",
        );
    }
    if [
        "Address already in use",
        "[Errno 98]",
        "[WinError 10048]",
        "EADDRINUSE",
    ]
    .iter()
    .any(|s| output.contains(s))
    {
        add(
            Status::Failure,
            "the app could not listen: address already in use".into(),
            "let it listen on 127.0.0.1:%HTTP_PLATFORM_PORT%, the free port hpgate hands over, instead of a fixed port",
        );
    }
    if output.contains("WARNING: This is a development server") {
        add(
            Status::Warning,
            "the app runs Flask/Werkzeug's development server (\"WARNING: This is a development server. Do not use it in a production deployment.\")".into(),
            WAITRESS,
        );
    } else if output.contains("Werkzeug appears to be used in a production deployment") {
        add(
            Status::Warning,
            "the app runs Werkzeug's development server with allow_unsafe_werkzeug=True".into(),
            WAITRESS,
        );
    }
    found.extend(missing_module(output).map(|m| module_finding(m, python)));
    found.sort_by_key(|f| std::cmp::Reverse(f.status));
    found
}

fn module_finding(module: &str, python: Option<&Installation>) -> Finding {
    let (who, pip) = match python {
        Some(p) => (
            p.describe(),
            format!("{} -m pip install {module}", p.interpreter.display()),
        ),
        None => (
            "the app's interpreter".to_string(),
            format!("pip install {module} into the app's environment"),
        ),
    };
    Finding {
        status: Status::Failure,
        message: format!("ModuleNotFoundError: No module named '{module}', in {who}"),
        fix: format!("{pip} (the package may have another name), or point processPath at the venv that has it"),
    }
}

/// `x` of `ModuleNotFoundError: No module named 'x'`.
fn missing_module(output: &str) -> Option<&str> {
    let rest = output
        .split("ModuleNotFoundError: No module named '")
        .nth(1)?;
    rest.split('\'').next().filter(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_the_story_lines() {
        let dev = " * Debug mode: off\nWARNING: This is a development server. Do not use it in a production deployment.";
        assert_eq!(recognize(dev, None)[0].status, Status::Warning);
        let missing = "Traceback...\nModuleNotFoundError: No module named 'flask'\n";
        let f = recognize(missing, None);
        assert!(f[0].message.contains("'flask'"), "{f:?}");
        let sio = "RuntimeError: The Werkzeug web server is not designed to run in production. Pass allow_unsafe_werkzeug=True to the run() method to disable this error.";
        assert!(recognize(sio, None)[0]
            .fix
            .contains("allow_unsafe_werkzeug=True"));
        assert!(
            recognize("OSError: [Errno 98] Address already in use", None)[0]
                .message
                .contains("already in use")
        );
        assert!(recognize("Serving on http://127.0.0.1:5000", None).is_empty());
    }
}
