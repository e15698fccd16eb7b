//! The charts of alert mails and the digest: a check's recent history as a small PNG, with
//! its warn and crit lines and the moment it fired marked, embedded in the mail as an image
//! part (`multipart/related`, referenced by `cid:`) because mail clients block SVG and remote
//! images.
//!
//! Drawn with plotters' bitmap backend and no font feature: the PNG carries no text (no
//! fontconfig or freetype in the package); the words around it (the time span, the
//! thresholds, the lowest and highest value) are in the mail's HTML. The pixels are written as
//! a palette PNG (a chart has a handful of colours), a few kilobytes each.

use chrono::{DateTime, Utc};
use plotters::prelude::*;

/// The pixel size of a mail's chart.
pub const MAIL_SIZE: (u32, u32) = (600, 180);
/// The pixel size of each chart in a grouped mail (one per alert) or the digest.
pub const SMALL_SIZE: (u32, u32) = (400, 120);

/// What one chart shows.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// (time, value), oldest first.
    pub points: &'a [(DateTime<Utc>, f64)],
    /// Left edge.
    pub from: DateTime<Utc>,
    /// Right edge.
    pub to: DateTime<Utc>,
    /// The warn line.
    pub warn: Option<f64>,
    /// The crit line.
    pub crit: Option<f64>,
    /// A vertical mark (the moment the alert fired).
    pub mark: Option<DateTime<Utc>>,
}

/// Why a chart could not be drawn (the mail goes out without it).
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// Fewer than two points, or an empty time span.
    #[error("not enough history to draw")]
    Empty,
    /// plotters failed to draw.
    #[error("drawing the chart: {0}")]
    Draw(String),
    /// The PNG encoder failed.
    #[error("encoding the chart as PNG: {0}")]
    Encode(String),
}

/// The colours: line, warn, crit, mark, grid, background.
const LINE: RGBColor = RGBColor(0x1f, 0x5f, 0xa8);
const FILL: RGBColor = RGBColor(0xdd, 0xe8, 0xf5);
const WARN: RGBColor = RGBColor(0xe0, 0x9b, 0x00);
const CRIT: RGBColor = RGBColor(0xc6, 0x28, 0x28);
const MARK: RGBColor = RGBColor(0x33, 0x33, 0x33);
const GRID: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);

impl Chart<'_> {
    /// The value range drawn: the points and the thresholds, a little padded, from 0 when
    /// every value is positive.
    pub fn y_range(&self) -> (f64, f64) {
        let vals = self.points.iter().map(|p| p.1);
        let lines = self.warn.into_iter().chain(self.crit);
        let (mut lo, mut hi) = vals
            .chain(lines)
            .filter(|v| v.is_finite())
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if lo > hi {
            return (0.0, 1.0);
        }
        if lo >= 0.0 {
            lo = 0.0;
        }
        let pad = ((hi - lo) * 0.08).max(1e-9);
        hi += pad;
        if lo < 0.0 {
            lo -= pad;
        }
        (lo, hi)
    }

    /// The chart as PNG bytes, `size` pixels.
    pub fn png(&self, size: (u32, u32)) -> Result<Vec<u8>, ChartError> {
        let span = (self.to - self.from).num_milliseconds() as f64 / 1000.0;
        if self.points.len() < 2 || span <= 0.0 {
            return Err(ChartError::Empty);
        }
        let (w, h) = size;
        let mut rgb = vec![255u8; (w * h * 3) as usize];
        self.draw(&mut rgb, size, span)
            .map_err(|e| ChartError::Draw(e.to_string()))?;
        encode(&rgb, w, h)
    }

    fn draw(
        &self,
        rgb: &mut [u8],
        (w, h): (u32, u32),
        span: f64,
    ) -> Result<(), Box<dyn std::error::Error + '_>> {
        let x = |t: DateTime<Utc>| (t - self.from).num_milliseconds() as f64 / 1000.0;
        let (lo, hi) = self.y_range();
        let root = BitMapBackend::with_buffer(rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(4)
            .build_cartesian_2d(0.0..span, lo..hi)?;
        // Quarter lines across and one line per hour (per day beyond two days) down.
        for q in 1..4 {
            let y = lo + (hi - lo) * q as f64 / 4.0;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, y), (span, y)],
                GRID,
            )))?;
        }
        let step = if span > 2.0 * 86_400.0 {
            86_400.0
        } else {
            3600.0
        };
        let mut gx = step - (self.from.timestamp() as f64).rem_euclid(step);
        while gx < span && span / step <= 100.0 {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(gx, lo), (gx, hi)],
                GRID,
            )))?;
            gx += step;
        }
        let pts: Vec<(f64, f64)> = self
            .points
            .iter()
            .filter(|p| p.1.is_finite() && p.0 >= self.from && p.0 <= self.to)
            .map(|p| (x(p.0), p.1))
            .collect();
        let base = lo.max(0.0).min(hi);
        chart.draw_series(AreaSeries::new(pts.iter().copied(), base, FILL))?;
        for (t, colour) in [(self.warn, WARN), (self.crit, CRIT)] {
            if let Some(t) = t {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, t), (span, t)],
                    colour.stroke_width(2),
                )))?;
            }
        }
        chart.draw_series(LineSeries::new(pts, LINE.stroke_width(2)))?;
        if let Some(m) = self.mark.filter(|m| *m >= self.from && *m <= self.to) {
            let mx = x(m);
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(mx, lo), (mx, hi)],
                MARK.stroke_width(2),
            )))?;
        }
        root.present()?;
        Ok(())
    }
}

/// `rgb` as a PNG: indexed when it has at most 256 colours (a chart has few), else RGB.
fn encode(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, ChartError> {
    let err = |e: png::EncodingError| ChartError::Encode(e.to_string());
    let mut palette: Vec<[u8; 3]> = Vec::new();
    let mut index = Vec::with_capacity(rgb.len() / 3);
    for px in rgb.chunks_exact(3) {
        let c = [px[0], px[1], px[2]];
        let i = match palette.iter().position(|p| *p == c) {
            Some(i) => i,
            None if palette.len() < 256 => {
                palette.push(c);
                palette.len() - 1
            }
            None => {
                index.clear();
                break;
            }
        };
        index.push(i as u8);
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_compression(png::Compression::High);
        let data: &[u8] = if index.len() == (w * h) as usize {
            enc.set_color(png::ColorType::Indexed);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_palette(palette.concat());
            &index
        } else {
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            rgb
        };
        let mut wr = enc.write_header().map_err(err)?;
        wr.write_image_data(data).map_err(err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_small_png_that_decodes() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap();
        let pts: Vec<_> = (0..360)
            .map(|m| {
                let v = 60.0 + m as f64 / 10.0 + ((m * 7) % 5) as f64;
                (t0 + chrono::Duration::minutes(m), v)
            })
            .collect();
        let c = Chart {
            points: &pts,
            from: t0,
            to: t0 + chrono::Duration::hours(6),
            warn: Some(80.0),
            crit: Some(90.0),
            mark: Some(t0 + chrono::Duration::minutes(300)),
        };
        let png = c.png(MAIL_SIZE).unwrap();
        assert!(png.len() < 60_000, "{} bytes", png.len());
        let dec = png::Decoder::new(std::io::Cursor::new(&png));
        let r = dec.read_info().unwrap();
        assert_eq!((r.info().width, r.info().height), MAIL_SIZE);
        assert!(matches!(
            Chart {
                points: &pts[..1],
                ..c
            }
            .png(SMALL_SIZE),
            Err(ChartError::Empty)
        ));
    }
}
