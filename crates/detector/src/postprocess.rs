//! Turning the raw `boxes`/`scores` outputs into detections as TF's post-processing did:
//! per-class score threshold, greedy NMS per class, merge, sort by score, keep the top N.

use std::cmp::Ordering;

use edgepool_wire::detection::{BBox, Detection};

use crate::{DetectorConfig, NUM_SCORE_COLUMNS, coco_label};

#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    class_id: u16,
    anchor: u32,
    bbox: BBox,
}

/// Highest score first; ties broken by anchor then class so results are deterministic.
fn by_score(a: &Candidate, b: &Candidate) -> Ordering {
    b.score.total_cmp(&a.score).then(a.anchor.cmp(&b.anchor)).then(a.class_id.cmp(&b.class_id))
}

/// Reusable scratch space for post-processing one frame.
#[derive(Debug, Default)]
pub(crate) struct PostProcessor {
    candidates: Vec<Candidate>,
    kept: Vec<Candidate>,
}

impl PostProcessor {
    /// `boxes` is `[anchors, 4]` of normalized `[ymin, xmin, ymax, xmax]`, `scores` is
    /// `[anchors, 91]`; both row-major. Returns detections sorted by descending score.
    pub(crate) fn run(&mut self, boxes: &[f32], scores: &[f32], cfg: &DetectorConfig) -> Vec<Detection> {
        self.candidates.clear();
        self.kept.clear();
        let rows = scores.chunks_exact(NUM_SCORE_COLUMNS).zip(boxes.chunks_exact(4));
        for (anchor, (row, b)) in rows.enumerate() {
            // Column 0 is background; unused ids have no label and are never reported.
            for (class, &score) in row.iter().enumerate().skip(1) {
                // NaN fails this comparison, so a broken output can never become a detection.
                if score >= cfg.score_threshold {
                    let Ok(class_id) = u16::try_from(class) else {
                        continue;
                    };
                    if coco_label(class_id).is_none() {
                        continue;
                    }
                    self.candidates.push(Candidate {
                        score,
                        class_id,
                        anchor: u32::try_from(anchor).unwrap_or(u32::MAX),
                        // TF clips boxes to the unit window before NMS; BBox::new does the same.
                        bbox: BBox::new(b[1], b[0], b[3], b[2]),
                    });
                }
            }
        }

        if cfg.class_agnostic_nms {
            self.candidates.sort_unstable_by(by_score);
            nms(&self.candidates, cfg, &mut self.kept);
        } else {
            self.candidates.sort_unstable_by(|a, b| a.class_id.cmp(&b.class_id).then(by_score(a, b)));
            for group in self.candidates.chunk_by(|a, b| a.class_id == b.class_id) {
                nms(group, cfg, &mut self.kept);
            }
            self.kept.sort_unstable_by(by_score);
        }
        self.kept.truncate(cfg.max_detections);
        self.kept
            .iter()
            .map(|c| Detection {
                label: coco_label(c.class_id).unwrap_or_default().to_owned(),
                class_id: c.class_id,
                score: c.score,
                bbox: c.bbox,
            })
            .collect()
    }
}

/// Greedy NMS over `sorted` (descending score): keep a box unless it overlaps an already kept
/// box of this group by IoU strictly greater than the threshold (TF's rule); at most
/// `max_detections` per group (TF's `max_detections_per_class`). Appends to `kept`.
fn nms(sorted: &[Candidate], cfg: &DetectorConfig, kept: &mut Vec<Candidate>) {
    let group_start = kept.len();
    for c in sorted {
        if kept.len() - group_start >= cfg.max_detections {
            break;
        }
        if kept[group_start..].iter().all(|k| k.bbox.iou(&c.bbox) <= cfg.iou_threshold) {
            kept.push(*c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One anchor: its box `[ymin, xmin, ymax, xmax]` and its non-zero `(class, score)`s.
    type Anchor<'a> = ([f32; 4], &'a [(usize, f32)]);

    /// Builds raw outputs from anchors.
    fn outputs(anchors: &[Anchor<'_>]) -> (Vec<f32>, Vec<f32>) {
        let mut boxes = Vec::new();
        let mut scores = vec![0.0; anchors.len() * NUM_SCORE_COLUMNS];
        for (i, (b, s)) in anchors.iter().enumerate() {
            boxes.extend_from_slice(b);
            for &(class, score) in *s {
                scores[i * NUM_SCORE_COLUMNS + class] = score;
            }
        }
        (boxes, scores)
    }

    #[test]
    fn per_class_nms_keeps_overlapping_boxes_of_other_classes() {
        let (boxes, scores) = outputs(&[
            ([0.0, 0.0, 0.5, 0.5], &[(1, 0.9), (17, 0.7)]),
            ([0.0, 0.0, 0.5, 0.52], &[(1, 0.8)]), // same person again: suppressed
            ([0.5, 0.5, 1.0, 1.0], &[(1, 0.6)]),  // another person elsewhere: kept
            ([0.0, 0.0, 1.0, 1.0], &[(12, 0.99), (0, 0.99)]), // unused id and background
            ([0.2, 0.2, 0.3, 0.3], &[(1, 0.49)]), // below threshold
        ]);
        let mut p = PostProcessor::default();
        let cfg = DetectorConfig::default();
        let d = p.run(&boxes, &scores, &cfg);
        let got: Vec<_> = d.iter().map(|d| (d.label.as_str(), d.score)).collect();
        assert_eq!(got, [("person", 0.9), ("cat", 0.7), ("person", 0.6)]);
        assert_eq!(d[0].bbox, BBox::new(0.0, 0.0, 0.5, 0.5));

        let agnostic = DetectorConfig { class_agnostic_nms: true, ..cfg.clone() };
        let d = p.run(&boxes, &scores, &agnostic);
        let got: Vec<_> = d.iter().map(|d| (d.label.as_str(), d.score)).collect();
        assert_eq!(got, [("person", 0.9), ("person", 0.6)]);

        let top1 = DetectorConfig { max_detections: 1, ..cfg };
        assert_eq!(p.run(&boxes, &scores, &top1).len(), 1);
    }

    #[test]
    fn iou_equal_to_threshold_is_kept() {
        // Two boxes with IoU exactly 0.5: kept at threshold 0.5 (TF suppresses only above it).
        let (boxes, scores) = outputs(&[([0.0, 0.0, 1.0, 0.5], &[(1, 0.9)]), ([0.0, 0.0, 0.5, 0.5], &[(1, 0.8)])]);
        let cfg = DetectorConfig { iou_threshold: 0.5, ..Default::default() };
        assert_eq!(PostProcessor::default().run(&boxes, &scores, &cfg).len(), 2);
        let cfg = DetectorConfig { iou_threshold: 0.49, ..Default::default() };
        assert_eq!(PostProcessor::default().run(&boxes, &scores, &cfg).len(), 1);
    }
}
