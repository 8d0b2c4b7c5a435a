//! A runtime's argv as the kernel copies it (NUL-separated strings): the
//! container ID, `--root` and `--log` a `runc`/`crun` call names. The
//! first string is the runtime's comm.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_user::{
    diagnose::exec::{parse_exec_args, parse_runc_args},
    events::{ExecInfo, Role},
    processes::StaticProcesses,
};

fuzz_target!(|data: &[u8]| {
    let mut strings = data.split(|&b| b == 0).map(|s| String::from_utf8_lossy(s).into_owned());
    let comm = strings.next().unwrap_or_default();
    let args: Vec<String> = strings.collect();
    let cmd = parse_runc_args(&args, &comm);
    if let Some(id) = &cmd.container {
        assert!(args.iter().any(|a| a.contains(id.as_str())));
    }
    if args.is_empty() {
        return;
    }
    // A cut argv, completed from a cmdline that is the same argv.
    let info = ExecInfo {
        ppid: 1,
        ns_pid: 2,
        ns_level: 0,
        role: Role::Runtime,
        filename: String::new(),
        args: args.clone(),
        args_truncated: true,
    };
    let mut host = StaticProcesses::default();
    host.cmdlines.insert(2, args);
    assert_eq!(parse_exec_args(&info, 2, &comm, &host), cmd);
});
