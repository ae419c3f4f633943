//! The runtime's one error type, with stable numeric codes shared with the C ABI.
//!
//! Driver status codes become [`Error`]s only in [`from_status`], so every boundary maps codes
//! the same way. Errors are values, never sticky state: after an asynchronous fault the device
//! stays usable unless it was lost.

use knpu_driver_abi as abi;

/// Everything that can go wrong in knpu. Each variant has a stable [`Error::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument is out of range or inconsistent.
    #[error("invalid value: {detail}")]
    InvalidValue {
        /// What is wrong.
        detail: String,
    },
    /// A handle is null, unknown or already destroyed.
    #[error("invalid handle: {detail}")]
    InvalidHandle {
        /// Which handle.
        detail: String,
    },
    /// Device memory is exhausted even after the allocator released its cache.
    #[error(
        "out of memory on device {device}: tried to allocate {requested} bytes; {allocated} bytes \
         allocated, {reserved} bytes reserved by the caching allocator, {free} bytes free of \
         {total} total"
    )]
    OutOfMemory {
        /// The device index.
        device: usize,
        /// Bytes asked for.
        requested: u64,
        /// Bytes in live buffers.
        allocated: u64,
        /// Bytes the caching allocator holds from the driver (live plus cached).
        reserved: u64,
        /// Bytes the driver reports free.
        free: u64,
        /// The device's total memory.
        total: u64,
    },
    /// The driver or device does not support this function, kernel, dtype or option.
    #[error("not supported: {detail}")]
    NotSupported {
        /// What is not supported.
        detail: String,
    },
    /// Work addressed device memory outside every live allocation (a device fault).
    #[error("illegal address: {message}")]
    IllegalAddress {
        /// The driver's message: the command and the address.
        message: String,
    },
    /// A kernel failed while it ran.
    #[error("kernel fault: {message}")]
    KernelFault {
        /// The driver's message.
        message: String,
    },
    /// The device is gone; every later call on it fails.
    #[error("device lost: {message}")]
    DeviceLost {
        /// The driver's message.
        message: String,
    },
    /// A wait ended at its timeout.
    #[error("timed out: {detail}")]
    Timeout {
        /// What was waited for.
        detail: String,
    },
    /// A driver library was built for another ABI major.
    #[error(
        "driver `{driver}` speaks knpu driver ABI {driver_major}.{driver_minor}, but this runtime \
         speaks {runtime_major}.{runtime_minor}: majors must match"
    )]
    AbiMismatch {
        /// The driver's path or name.
        driver: String,
        /// The driver's ABI major.
        driver_major: u32,
        /// The driver's ABI minor.
        driver_minor: u32,
        /// The runtime's ABI major.
        runtime_major: u32,
        /// The runtime's ABI minor.
        runtime_minor: u32,
    },
    /// A bug in knpu or a driver.
    #[error("internal error: {detail}")]
    Internal {
        /// What broke.
        detail: String,
    },
    /// Work did not run because work it waited on had failed.
    #[error("dependency failed: {message}")]
    DependencyFailed {
        /// The driver's message, naming the original failure.
        message: String,
    },
    /// A driver library could not be loaded.
    #[error("cannot load driver `{path}`: {reason}")]
    DriverLoad {
        /// The library's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The work asked about has not completed yet.
    #[error("not ready: {detail}")]
    NotReady {
        /// What is not ready.
        detail: String,
    },
    /// An operand's shape does not fit the operation.
    #[error("operand `{operand}`: expected shape {expected}, got {actual}")]
    Shape {
        /// The operand's name.
        operand: &'static str,
        /// What the operation needs.
        expected: String,
        /// What was passed.
        actual: String,
    },
    /// An operand's element type does not fit the operation.
    #[error("operand `{operand}`: expected dtype {expected}, got {actual}")]
    Dtype {
        /// The operand's name.
        operand: &'static str,
        /// What the operation needs.
        expected: String,
        /// What was passed.
        actual: String,
    },
    /// An operation is not allowed during a stream capture, or the capture failed.
    #[error("stream capture: {detail}")]
    Capture {
        /// What happened.
        detail: String,
    },
    /// A whole-graph update could not be applied; the instance is unchanged.
    #[error("graph update failed ({result:?}{}): {detail}", node.map(|n| format!(" at node {n}")).unwrap_or_default())]
    GraphUpdate {
        /// CUDA's update result code for what differed.
        result: crate::graph::GraphUpdateResult,
        /// The first node that differed, if one did.
        node: Option<usize>,
        /// What differed.
        detail: String,
    },
    /// Operands live on different devices.
    #[error("operand `{operand}` is on device {actual}, but the work runs on device {expected}")]
    DeviceMismatch {
        /// The operand's name.
        operand: &'static str,
        /// The device the work runs on.
        expected: usize,
        /// The operand's device.
        actual: usize,
    },
}

impl Error {
    /// The stable numeric code of this error, shared with the C ABI's `knpuError_t`.
    pub fn code(&self) -> u32 {
        match self {
            Error::InvalidValue { .. } => 1,
            Error::InvalidHandle { .. } => 2,
            Error::OutOfMemory { .. } => 3,
            Error::NotSupported { .. } => 4,
            Error::IllegalAddress { .. } => 5,
            Error::KernelFault { .. } => 6,
            Error::DeviceLost { .. } => 7,
            Error::Timeout { .. } => 8,
            Error::AbiMismatch { .. } => 9,
            Error::Internal { .. } => 10,
            Error::DependencyFailed { .. } => 11,
            Error::DriverLoad { .. } => 12,
            Error::NotReady { .. } => 13,
            Error::Shape { .. } => 14,
            Error::Dtype { .. } => 15,
            Error::DeviceMismatch { .. } => 16,
            Error::Capture { .. } => 17,
            Error::GraphUpdate { .. } => 18,
        }
    }

    /// The stable name of this error's code, e.g. `"IllegalAddress"`.
    pub fn name(&self) -> &'static str {
        match self {
            Error::InvalidValue { .. } => "InvalidValue",
            Error::InvalidHandle { .. } => "InvalidHandle",
            Error::OutOfMemory { .. } => "OutOfMemory",
            Error::NotSupported { .. } => "NotSupported",
            Error::IllegalAddress { .. } => "IllegalAddress",
            Error::KernelFault { .. } => "KernelFault",
            Error::DeviceLost { .. } => "DeviceLost",
            Error::Timeout { .. } => "Timeout",
            Error::AbiMismatch { .. } => "AbiMismatch",
            Error::Internal { .. } => "Internal",
            Error::DependencyFailed { .. } => "DependencyFailed",
            Error::DriverLoad { .. } => "DriverLoad",
            Error::NotReady { .. } => "NotReady",
            Error::Shape { .. } => "Shape",
            Error::Dtype { .. } => "Dtype",
            Error::DeviceMismatch { .. } => "DeviceMismatch",
            Error::Capture { .. } => "Capture",
            Error::GraphUpdate { .. } => "GraphUpdate",
        }
    }

    /// Whether the device that reported this error can no longer be used.
    pub fn is_device_lost(&self) -> bool {
        matches!(self, Error::DeviceLost { .. })
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Error {
        Error::InvalidValue {
            detail: detail.into(),
        }
    }
}

/// The result type of knpu.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps a driver status and its context (what was being done, or the driver's own message)
/// to an [`Error`]. The one place where driver codes become runtime errors.
pub(crate) fn from_status(status: abi::KnpuStatus, context: impl Into<String>) -> Error {
    let message = context.into();
    match status {
        abi::KNPU_STATUS_INVALID_VALUE => Error::InvalidValue { detail: message },
        abi::KNPU_STATUS_INVALID_HANDLE => Error::InvalidHandle { detail: message },
        abi::KNPU_STATUS_NOT_SUPPORTED => Error::NotSupported { detail: message },
        abi::KNPU_STATUS_ILLEGAL_ADDRESS => Error::IllegalAddress { message },
        abi::KNPU_STATUS_KERNEL_FAULT => Error::KernelFault { message },
        abi::KNPU_STATUS_DEVICE_LOST => Error::DeviceLost { message },
        abi::KNPU_STATUS_TIMEOUT => Error::Timeout { detail: message },
        abi::KNPU_STATUS_DEPENDENCY_FAILED => Error::DependencyFailed { message },
        // Out of memory reaches users through the allocator, which adds its figures; a raw
        // OOM elsewhere (a queue, a semaphore) is a host resource failure.
        abi::KNPU_STATUS_OUT_OF_MEMORY => Error::Internal {
            detail: format!("driver out of resources: {message}"),
        },
        abi::KNPU_STATUS_ABI_MISMATCH => Error::Internal {
            detail: format!("driver reported an ABI mismatch: {message}"),
        },
        other => Error::Internal {
            detail: format!("driver status {other}: {message}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_named() {
        let e = from_status(abi::KNPU_STATUS_ILLEGAL_ADDRESS, "command 0: address 0x10");
        assert_eq!(e.code(), 5);
        assert_eq!(e.name(), "IllegalAddress");
        assert!(e.to_string().contains("0x10"));
        assert_eq!(from_status(abi::KNPU_STATUS_DEVICE_LOST, "x").code(), 7);
        assert!(from_status(abi::KNPU_STATUS_DEVICE_LOST, "x").is_device_lost());
    }

    #[test]
    fn oom_message_names_four_figures() {
        let e = Error::OutOfMemory {
            device: 0,
            requested: 10,
            allocated: 20,
            reserved: 30,
            free: 40,
            total: 100,
        };
        let s = e.to_string();
        for figure in [
            "10 bytes",
            "20 bytes allocated",
            "30 bytes reserved",
            "40 bytes free",
        ] {
            assert!(s.contains(figure), "{s}");
        }
    }
}
