//! The C driver template (`examples/driver-template/`), compiled with `cc` and loaded
//! through `KNPU_DRIVER_PATH` as a vendor's driver would be: the conformance kit runs on it
//! (its kernel and fault-injection cases skip, as the template reports neither), C API calls
//! run on it, and a kernel launch on it is a clear NotSupported error. The template's known
//! gaps are declared, with reasons, in `examples/driver-template/conformance-expectations.txt`;
//! a declared failure that starts passing fails the run.

mod support;

use std::ffi::c_void;
use std::sync::Once;

fn template_path() -> std::path::PathBuf {
    let out = support::out_dir("driver-template").join("libknpu_driver_template.so");
    support::build_shared_library(
        &support::repo().join("examples/driver-template/knpu_driver_template.c"),
        &out,
    );
    out
}

fn device() -> knpu::Device {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Set before the runtime's first use, which reads it once; every test comes here.
        std::env::set_var("KNPU_DRIVER_PATH", template_path());
    });
    let errors = knpu::driver_load_errors();
    assert!(errors.is_empty(), "driver load errors: {errors:?}");
    knpu::devices()
        .into_iter()
        .find(|d| d.driver().name() == "c-template")
        .expect("the C template's device")
}

#[test]
fn conformance_kit_passes_on_the_template() {
    device();
    let target = knpu_conformance::Target::library(&template_path()).expect("the template loads");
    let expectations = knpu_conformance::Expectations::load(
        &support::repo().join("examples/driver-template/conformance-expectations.txt"),
    )
    .expect("the template's expectations parse");
    let report = knpu_conformance::run(&target, &expectations, None, &mut |_| {});
    assert!(report.is_success(), "{}", report.table());
}

#[test]
fn kernel_launch_on_the_template_is_not_supported() {
    let dev = device();
    assert!(!dev
        .supports_kernel(
            knpu::abi::KNPU_KERNEL_ELEMENTWISE,
            knpu::abi::KNPU_DTYPE_F32
        )
        .unwrap());
    let s = knpu::Stream::new(&dev).unwrap();
    let a = s.from_slice(&[1f32, 2.0, 3.0]).unwrap();
    let b = s.from_slice(&[1f32, 1.0, 1.0]).unwrap();
    let mut c = s.alloc::<f32>(3).unwrap();
    let e = knpu::ops::add(&s, &a, &b, &mut c).unwrap_err();
    assert!(matches!(e, knpu::Error::NotSupported { .. }), "{e}");
    // The stream goes on working after the refusal.
    assert_eq!(a.to_vec().unwrap(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn c_api_memory_copy_and_stream_work_on_the_template() {
    use knpu_capi::header::*;
    use knpu_capi::*;
    let dev = device();
    assert_eq!(knpuSetDevice(dev.ordinal() as i32), knpuSuccess);
    let mut d: *mut c_void = std::ptr::null_mut();
    let mut s: knpuStream_t = std::ptr::null_mut();
    let input: Vec<u32> = (0..1000).collect();
    let mut output = vec![0u32; 1000];
    // SAFETY: every pointer passed is valid for the sizes given; host buffers outlive the
    // synchronize that ends their use.
    unsafe {
        assert_eq!(knpuMalloc(&mut d, 4000), knpuSuccess);
        assert_eq!(knpuStreamCreate(&mut s), knpuSuccess);
        let src = input.as_ptr() as *const c_void;
        assert_eq!(
            knpuMemcpyAsync(d, src, 4000, knpuMemcpyHostToDevice, s),
            knpuSuccess
        );
        // Shift by 16 bytes within the allocation, through an interior pointer.
        let interior = (d as *mut u8).add(16) as *mut c_void;
        assert_eq!(
            knpuMemcpyAsync(d, interior, 3984, knpuMemcpyDeviceToDevice, s),
            knpuSuccess
        );
        assert_eq!(
            knpuMemsetAsync(interior.cast::<u8>().add(3968).cast(), 0, 16, s),
            knpuSuccess
        );
        let dst = output.as_mut_ptr() as *mut c_void;
        assert_eq!(
            knpuMemcpyAsync(dst, d, 4000, knpuMemcpyDeviceToHost, s),
            knpuSuccess
        );
        assert_eq!(knpuStreamSynchronize(s), knpuSuccess);
        assert_eq!(knpuStreamDestroy(s), knpuSuccess);
        assert_eq!(knpuFree(d), knpuSuccess);
    }
    assert_eq!(&output[..996], &input[4..]);
    assert_eq!(&output[996..], &[0, 0, 0, 0]);
}
