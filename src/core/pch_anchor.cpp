// Anchor translation unit for the precompiled torch header (cord_torch_pch).
