"""Fake of ComfyUI's ``folder_paths``: the few functions the OmniSync nodes call.

``set_base(path)`` (fake only) points models_dir and the input folder at a temp folder and resets the
registry.
"""

import os

models_dir = os.path.join(os.getcwd(), "models")
input_directory = os.path.join(os.getcwd(), "input")
folder_names_and_paths = {}


def set_base(path):
    global models_dir, input_directory
    models_dir = os.path.join(path, "models")
    input_directory = os.path.join(path, "input")
    folder_names_and_paths.clear()
    # the folders ComfyUI registers itself (folder_paths.py of 0.3.64), with their file extensions
    exts = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
    for name in ("audio_encoders", "diffusion_models", "vae", "text_encoders"):
        folder_names_and_paths[name] = ([os.path.join(models_dir, name)], set(exts))


def add_model_folder_path(folder_name, full_folder_path, is_default=False):
    if folder_name in folder_names_and_paths:
        paths = folder_names_and_paths[folder_name][0]
        if full_folder_path not in paths:
            paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)
    else:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())


def get_folder_paths(folder_name):
    return folder_names_and_paths[folder_name][0][:]


def get_filename_list(folder_name):
    paths, exts = folder_names_and_paths[folder_name]
    out = set()
    for root in paths:
        if not os.path.isdir(root):
            continue
        for dirpath, _, files in os.walk(root):
            for f in files:
                rel = os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")
                if not exts or os.path.splitext(f)[1].lower() in exts:
                    out.add(rel)
    return sorted(out)


def get_input_directory():
    return input_directory


def get_full_path(folder_name, filename):
    for root in folder_names_and_paths[folder_name][0]:
        path = os.path.join(root, filename)
        if os.path.isfile(path):
            return path
    return None


set_base(os.getcwd())
