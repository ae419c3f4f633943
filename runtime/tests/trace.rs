//! `KNPU_TRACE` writes a Chrome trace of every command at process exit.

use std::process::Command;

#[test]
fn trace_file_lists_every_command() {
    let path = std::env::temp_dir().join(format!("knpu-trace-{}.json", std::process::id()));
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "trace_child", "--test-threads=1"])
        .env("KNPU_TRACE", &path)
        .output()
        .expect("run the traced child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).expect("the trace file is written at exit");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let events = v["traceEvents"].as_array().unwrap();
    let complete: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    let names: Vec<&str> = complete
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    // `ops::add` launches KNPU_KERNEL_BINARY (ABI 2.0 moved ADD out of ELEMENTWISE).
    let kernel = format!("kernel {}", knpu::abi::KNPU_KERNEL_BINARY);
    for want in [
        "copy host to device",
        kernel.as_str(),
        "fill",
        "copy device to host",
    ] {
        assert!(names.contains(&want), "missing {want} in {names:?}");
    }
    for e in &complete {
        assert!(e["dur"].as_f64().unwrap() >= 0.0);
        assert!(e["ts"].as_f64().unwrap() >= 0.0);
    }
    let _ = std::fs::remove_file(path);
}

#[test]
#[ignore = "runs as a child of trace_file_lists_every_command"]
fn trace_child() {
    let dev = knpu::device(0).unwrap();
    let s = knpu::Stream::new(&dev).unwrap();
    let a = s.from_slice(&[1.0f32; 64]).unwrap();
    let mut b = s.alloc::<f32>(64).unwrap();
    s.memset(&mut b, 0.0f32).unwrap();
    knpu::ops::add(&s, &a, &a, &mut b).unwrap();
    assert_eq!(b.to_vec().unwrap(), vec![2.0; 64]);
}
