"""From a file to a detector's answer, one path for every caller.

- :mod:`decodemo.inference.inputs`: tell an image from a sound (:func:`modality_of`), read an
  upload once (:func:`load_input`), and turn it into what a model takes (:func:`prepare`).
- :mod:`decodemo.inference.shapes`: images of any shape as square inputs (padded or tiled) and
  their maps back at the image's shape.
- :mod:`decodemo.inference.detect`: run a detector on that (:func:`detect_loaded`,
  :func:`detect_prepared`) or on files (:func:`detect_paths`), batches and audio windows included.
"""

from decodemo.inference.detect import (ClipResult, Detection, detect_batched, detect_clip, detect_loaded,
                                       detect_paths, detect_prepared, reduce_windows)
from decodemo.inference.inputs import (AudioInput, ImageInput, LoadedClip, LoadedImage, audio_input, image_input,
                                       image_tensor, is_audio_path, load_input, modality_of, prepare, prepare_path,
                                       sniff_modality, file_modality,
                                       sample_tensors, spec_to_image, spectrogram_windows)

__all__ = ["ClipResult", "Detection", "detect_batched", "detect_clip", "detect_loaded", "detect_paths",
           "detect_prepared", "reduce_windows", "AudioInput", "ImageInput", "LoadedClip", "LoadedImage",
           "audio_input", "image_input", "image_tensor", "is_audio_path", "load_input", "modality_of", "sniff_modality", "file_modality", "prepare", "prepare_path",
           "sample_tensors", "spec_to_image", "spectrogram_windows"]
