//! QR rendering for `GET /v1/tenants/{id}/qr`: PNG (scaled modules + quiet zone) or dense
//! Unicode text for a terminal. Pure functions, no IO.

use image::{GrayImage, ImageFormat, Luma};
use qrcode::{Color, QrCode};

/// Pixels per module in the PNG.
const SCALE: u32 = 8;
/// Quiet zone in modules.
const QUIET: u32 = 4;

/// Why a QR could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QrError {
    /// The data does not fit a QR code.
    #[error("qr data does not fit a qr code")]
    Encode,
    /// PNG encoding failed.
    #[error("png encoding failed: {0}")]
    Png(String),
}

/// PNG bytes of `data`.
///
/// # Errors
/// [`QrError`].
pub fn png(data: &str) -> Result<Vec<u8>, QrError> {
    let code = QrCode::new(data.as_bytes()).map_err(|_| QrError::Encode)?;
    let w = u32::try_from(code.width()).map_err(|_| QrError::Encode)?;
    let colors = code.to_colors();
    let side = (w + 2 * QUIET) * SCALE;
    let img = GrayImage::from_fn(side, side, |x, y| {
        let (mx, my) = (x / SCALE, y / SCALE);
        let dark = mx >= QUIET
            && my >= QUIET
            && mx < w + QUIET
            && my < w + QUIET
            && usize::try_from((my - QUIET) * w + (mx - QUIET))
                .ok()
                .and_then(|i| colors.get(i))
                .is_some_and(|c| *c == Color::Dark);
        if dark { Luma([0u8]) } else { Luma([255u8]) }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).map_err(|e| QrError::Png(e.to_string()))?;
    Ok(out.into_inner())
}

/// The QR as Unicode half blocks (two module rows per line), with a quiet zone.
///
/// # Errors
/// [`QrError::Encode`].
pub fn text(data: &str) -> Result<String, QrError> {
    let code = QrCode::new(data.as_bytes()).map_err(|_| QrError::Encode)?;
    Ok(code.render::<qrcode::render::unicode::Dense1x2>().quiet_zone(true).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A QR renders to a valid PNG (signature) and to multi-line text.
    #[test]
    fn renders_png_and_text() {
        let data = "2@abc,def,ghi,jkl,1";
        let p = png(data).unwrap();
        assert_eq!(p.get(..8), Some(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a][..]));
        let t = text(data).unwrap();
        assert!(t.lines().count() > 10);
    }
}
