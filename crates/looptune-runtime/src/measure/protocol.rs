//! The messages between a measurer and its worker process, and how they are framed.
//!
//! Each message is a frame: its length as a little-endian `u32`, then that many bytes of
//! bincode 2 (standard configuration, through serde, so the IR's serde derives are all a type
//! needs). The worker speaks first with [`Reply::Ready`], carrying [`PROTOCOL_VERSION`], so a
//! stale worker binary is rejected before it is sent anything; then every
//! [`Request::Measure`] is answered by one [`Reply::Measured`]. Closing the worker's stdin is the
//! request to exit.

use super::check::Reference;
use super::input::MeasureInput;
use super::pipeline::PipelineOutcome;
use super::MeasureOptions;
use crate::backend::BackendSpec;
use crate::target::Target;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::{self, Read, Write};
use thiserror::Error;

/// The version of the messages below; bumped whenever any of them (or a type they carry)
/// changes shape, because bincode has no field names to notice it by.
pub const PROTOCOL_VERSION: u32 = 3;

/// The largest frame accepted: far above any real message, small enough that a corrupt length
/// cannot make the reader allocate the machine away.
const MAX_FRAME_BYTES: usize = 1 << 30;

/// Why a message could not be sent or received.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Reading or writing the pipe failed.
    #[error("worker pipe: {0}")]
    Io(#[from] io::Error),
    /// A message could not be encoded.
    #[error("encoding a worker message: {0}")]
    Encode(String),
    /// A frame did not decode as the expected message.
    #[error("decoding a worker message of {bytes} bytes: {message}")]
    Decode {
        /// The frame's length.
        bytes: usize,
        /// bincode's message.
        message: String,
    },
    /// A frame length over the limit (a corrupt stream, or something else writing to it).
    #[error("worker frame of {bytes} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes")]
    FrameTooLarge {
        /// The length read.
        bytes: usize,
    },
    /// The stream ended inside a frame.
    #[error("the worker stream ended inside a frame")]
    Truncated,
}

/// One candidate for the worker, with everything it needs to measure it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Job<'a> {
    /// How to measure.
    pub options: Cow<'a, MeasureOptions>,
    /// What to compile for.
    pub target: Cow<'a, Target>,
    /// What to compile with.
    pub backend: BackendSpec,
    /// The candidate.
    pub input: Cow<'a, MeasureInput>,
    /// The expected outputs of the candidate's program.
    pub reference: Cow<'a, Reference>,
}

/// A message to the worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request<'a> {
    /// Measure one candidate and reply with [`Reply::Measured`].
    Measure(Box<Job<'a>>),
}

/// A message from the worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// Sent once at start-up.
    Ready {
        /// The worker's [`PROTOCOL_VERSION`].
        protocol: u32,
    },
    /// The result of the last [`Request::Measure`].
    Measured(PipelineOutcome),
}

/// Writes `message` as one frame and flushes.
pub(crate) fn write_frame<T: Serialize>(
    writer: &mut impl Write,
    message: &T,
) -> Result<(), ProtocolError> {
    let bytes = bincode::serde::encode_to_vec(message, bincode::config::standard())
        .map_err(|error| ProtocolError::Encode(error.to_string()))?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(ProtocolError::FrameTooLarge { bytes: bytes.len() });
    }
    writer.write_all(&(bytes.len() as u32).to_le_bytes())?;
    writer.write_all(&bytes)?;
    writer.flush()?;
    Ok(())
}

/// Reads one frame; `None` when the stream ends cleanly between frames.
pub(crate) fn read_frame<T: DeserializeOwned>(
    reader: &mut impl Read,
) -> Result<Option<T>, ProtocolError> {
    let mut length = [0u8; 4];
    let mut filled = 0;
    while filled < length.len() {
        match reader.read(&mut length[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(ProtocolError::Truncated),
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error.into()),
        }
    }
    let bytes = u32::from_le_bytes(length) as usize;
    if bytes > MAX_FRAME_BYTES {
        return Err(ProtocolError::FrameTooLarge { bytes });
    }
    let mut payload = vec![0u8; bytes];
    reader.read_exact(&mut payload).map_err(|error| {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            ProtocolError::Truncated
        } else {
            error.into()
        }
    })?;
    let (message, used) =
        bincode::serde::decode_from_slice::<T, _>(&payload, bincode::config::standard()).map_err(
            |error| ProtocolError::Decode {
                bytes,
                message: error.to_string(),
            },
        )?;
    if used != bytes {
        return Err(ProtocolError::Decode {
            bytes,
            message: format!("{} trailing bytes", bytes - used),
        });
    }
    Ok(Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::check::Reference;
    use crate::measure::{CheckMode, MeasureError, MeasureErrorKind};
    use looptune_ir::{lower, Schedule, Workload};

    #[test]
    fn a_job_round_trips_through_a_frame() {
        let workload: Workload = "conv2d:n=1,ic=2,h=5,w=5,oc=3,kh=3,kw=3,stride=1,pad=1"
            .parse()
            .expect("a workload");
        let program = workload.program(&Default::default()).expect("a program");
        let nest = lower(&Schedule::new(&program)).expect("lowers");
        let reference = Reference::compute(&program, CheckMode::Auto).expect("reference");
        let input = MeasureInput::new(program, nest, workload.flops());
        let options = MeasureOptions::quick();
        let target = Target::host();
        let request = Request::Measure(Box::new(Job {
            options: Cow::Borrowed(&options),
            target: Cow::Borrowed(&target),
            backend: BackendSpec {
                name: "c".to_string(),
                settings: vec!["gcc".to_string(), "-O2".to_string()],
            },
            input: Cow::Borrowed(&input),
            reference: Cow::Borrowed(&reference),
        }));
        let mut stream = Vec::new();
        write_frame(&mut stream, &request).expect("encodes");
        write_frame(&mut stream, &Reply::Ready { protocol: 7 }).expect("encodes");
        let mut reader = stream.as_slice();
        let Some(Request::Measure(job)) = read_frame::<Request>(&mut reader).expect("decodes")
        else {
            panic!("one request in the stream");
        };
        assert_eq!(*job.input, input);
        assert_eq!(*job.reference, reference);
        assert_eq!(*job.options, options);
        assert_eq!(job.backend.settings, ["gcc", "-O2"]);
        assert!(matches!(
            read_frame::<Reply>(&mut reader),
            Ok(Some(Reply::Ready { protocol: 7 }))
        ));
        assert!(matches!(read_frame::<Reply>(&mut reader), Ok(None)));
    }

    #[test]
    fn outcomes_with_errors_round_trip() {
        let outcome = PipelineOutcome {
            outcome: Err(MeasureError::new(
                MeasureErrorKind::WrongAnswer,
                "element 3",
            )),
            compile_ms: Some(2.0),
            check_ms: None,
        };
        let mut stream = Vec::new();
        write_frame(&mut stream, &Reply::Measured(outcome.clone())).expect("encodes");
        let Ok(Some(Reply::Measured(back))) = read_frame::<Reply>(&mut stream.as_slice()) else {
            panic!("a reply");
        };
        assert_eq!(back, outcome);
    }

    #[test]
    fn truncated_and_oversized_frames_are_errors() {
        let mut stream = Vec::new();
        write_frame(&mut stream, &Reply::Ready { protocol: 1 }).expect("encodes");
        let cut = &stream[..stream.len() - 1];
        assert!(matches!(
            read_frame::<Reply>(&mut &cut[..]),
            Err(ProtocolError::Truncated)
        ));
        assert!(matches!(
            read_frame::<Reply>(&mut &stream[..2]),
            Err(ProtocolError::Truncated)
        ));
        let huge = u32::MAX.to_le_bytes();
        assert!(matches!(
            read_frame::<Reply>(&mut &huge[..]),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        let garbage = [3u8, 0, 0, 0, 200, 200, 200];
        assert!(matches!(
            read_frame::<Reply>(&mut &garbage[..]),
            Err(ProtocolError::Decode { .. })
        ));
    }
}
