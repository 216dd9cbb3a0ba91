"""Files, frames, video and audio in and out."""
