//! The `probe-tracer` binary: all of it is [`tracer_user::app`].

fn main() -> std::process::ExitCode {
    tracer_user::app::main()
}
