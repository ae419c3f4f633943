//! `knpu.Graph`: stream capture and replay.
//!
//! `with knpu.graph() as g:` captures the work queued on the current stream (a side stream
//! made current for the block) into a graph, instantiated when the block ends;
//! `g.replay()` launches it whole. Copies and fills are captured today; ops join them as they
//! land. A graph is captured by one thread: ending or replaying it from another thread while
//! it captures is an error.

use crate::device::{current_stream, resolve, set_current_stream, Stream};
use crate::errors::{to_py, IntoPyResult};
use pyo3::prelude::*;
use std::thread::ThreadId;

struct Capturing {
    stream: knpu::Stream,
    thread: ThreadId,
    previous: Option<knpu::Stream>,
}

#[derive(Default)]
struct State {
    capturing: Option<Capturing>,
    graph: Option<knpu::Graph>,
    exec: Option<knpu::GraphExec>,
    /// The graph whose parameters the instance runs since the last `update`.
    updated_from: Option<knpu::Graph>,
}

/// A captured, instantiated graph of device work.
#[pyclass(module = "knpu._knpu", frozen)]
pub struct Graph {
    state: parking_lot::Mutex<State>,
}

impl State {
    /// The instance, for `action` ("replay", "update"): refused while the graph captures or
    /// before it has been captured.
    fn exec(&self, action: &str) -> PyResult<&knpu::GraphExec> {
        if self.capturing.is_some() {
            return Err(capture_error(format!(
                "cannot {action} a graph while it is capturing"
            )));
        }
        self.exec
            .as_ref()
            .ok_or_else(|| capture_error("the graph has not been captured"))
    }
}

fn capture_error(detail: impl Into<String>) -> PyErr {
    to_py(knpu::Error::Capture {
        detail: detail.into(),
    })
}

fn mode_of(name: &str) -> PyResult<knpu::CaptureMode> {
    match name {
        "global" => Ok(knpu::CaptureMode::Global),
        "thread_local" => Ok(knpu::CaptureMode::ThreadLocal),
        "relaxed" => Ok(knpu::CaptureMode::Relaxed),
        other => Err(crate::errors::invalid(format!(
            "capture_error_mode {other:?} is not \"global\", \"thread_local\" or \"relaxed\""
        ))),
    }
}

#[pymethods]
impl Graph {
    #[new]
    fn new() -> Graph {
        Graph {
            state: parking_lot::Mutex::new(State::default()),
        }
    }

    /// Starts capturing on `stream` (default: a new stream on the current device), which is
    /// current for this thread until `capture_end`. `capture_error_mode` says which other
    /// calls fail meanwhile: "global" (on any thread), "thread_local" or "relaxed".
    #[pyo3(signature = (stream=None, capture_error_mode="global"))]
    fn capture_begin(&self, stream: Option<&Stream>, capture_error_mode: &str) -> PyResult<()> {
        let mode = mode_of(capture_error_mode)?;
        let mut st = self.state.lock();
        if st.capturing.is_some() {
            return Err(capture_error("this graph is already capturing"));
        }
        let s = match stream {
            Some(s) => s.inner.clone(),
            None => knpu::Stream::new(&resolve(None)?).py()?,
        };
        s.begin_capture(mode).py()?;
        let previous = set_current_stream(s.device().ordinal(), Some(s.clone()));
        st.capturing = Some(Capturing {
            stream: s,
            thread: std::thread::current().id(),
            previous,
        });
        st.exec = None;
        st.graph = None;
        st.updated_from = None;
        Ok(())
    }

    /// Ends the capture and instantiates the graph. Only the capturing thread may end it.
    fn capture_end(&self, py: Python<'_>) -> PyResult<()> {
        let mut st = self.state.lock();
        let Some(c) = st.capturing.as_ref() else {
            return Err(capture_error("this graph is not capturing"));
        };
        if c.thread != std::thread::current().id() {
            return Err(capture_error(
                "the capture of this graph belongs to another thread; end it there",
            ));
        }
        let c = st.capturing.take().expect("checked above");
        set_current_stream(c.stream.device().ordinal(), c.previous);
        let graph = c.stream.end_capture().py()?;
        let exec = py.detach(|| graph.instantiate()).py()?;
        st.graph = Some(graph);
        st.exec = Some(exec);
        Ok(())
    }

    /// Launches the whole graph on `stream` (default: the current stream); returns once it
    /// is queued.
    #[pyo3(signature = (stream=None))]
    fn replay(&self, stream: Option<&Stream>) -> PyResult<()> {
        let st = self.state.lock();
        let exec = st.exec("replay")?;
        let s = match stream {
            Some(s) => s.inner.clone(),
            None => current_stream(&resolve(None)?)?,
        };
        exec.launch(&s).py()
    }

    /// Takes the parameters (tensors, numbers) of `source`, a capture of the same work on
    /// other tensors, into this graph's instance without instantiating it again: later
    /// replays run on `source`'s tensors. Work of another shape, another op or another
    /// order, or a different allocation inside the capture, raises `GraphUpdateError` and
    /// leaves this graph as it was.
    fn update(&self, source: &Graph) -> PyResult<()> {
        if std::ptr::eq(self, source) {
            return Ok(());
        }
        let from = {
            let src = source.state.lock();
            if src.capturing.is_some() {
                return Err(capture_error(
                    "cannot update from a graph that is capturing",
                ));
            }
            src.graph
                .clone()
                .ok_or_else(|| capture_error("the source graph has not been captured"))?
        };
        let mut st = self.state.lock();
        let exec = st.exec("update")?;
        exec.update(&from).py()?;
        st.updated_from = Some(from);
        Ok(())
    }

    /// Drops the captured graph and its memory.
    fn reset(&self) -> PyResult<()> {
        let mut st = self.state.lock();
        if st.capturing.is_some() {
            return Err(capture_error("cannot reset a graph while it is capturing"));
        }
        st.exec = None;
        st.graph = None;
        st.updated_from = None;
        Ok(())
    }

    /// Nodes in the captured graph (0 before a capture).
    #[getter]
    fn node_count(&self) -> usize {
        self.state
            .lock()
            .graph
            .as_ref()
            .map_or(0, |g| g.node_count())
    }

    /// Whether the graph is capturing now.
    #[getter]
    fn is_capturing(&self) -> bool {
        self.state.lock().capturing.is_some()
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().capture_begin(None, "global")?;
        Ok(slf)
    }

    #[pyo3(signature = (exc_type, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let ended = self.capture_end(py);
        match exc_type {
            // The block's own exception wins over a failed capture it caused.
            Some(t) if !t.is_none() => Ok(false),
            _ => ended.map(|_| false),
        }
    }

    fn __repr__(&self) -> String {
        let st = self.state.lock();
        match (&st.capturing, &st.graph) {
            (Some(_), _) => "knpu.Graph(capturing)".into(),
            (None, Some(g)) => format!("knpu.Graph(nodes={})", g.node_count()),
            (None, None) => "knpu.Graph(empty)".into(),
        }
    }
}
