"""Video: sampled frames of a clip, and faces linked into tracks across them.

- spool.spooled: an S3 object body -> a temporary file (bounded by settings.video.max_bytes);
- sampler.sample_frames / VideoReader: a video file -> upright PPM frames at sample_fps plus
  scene cuts, lazily, with limits; failures are errors.VideoError subclasses (all permanent);
- process.track_video / track_video_async: frames -> face model in batches -> tracks, decoding
  beside inference; process.BatchAnalyzer adapts the Triton client;
- tracks.TrackBuilder: the tracks of one video, frame by frame, also for frame samples uploaded
  as separate images (key convention and state design in its docstring).

pipeline/recognize/video.py wires them into the recognize stage (one observed face per track).
"""
