//! The COCO label map of the TF object detection API (`mscoco_label_map.pbtxt`): 80 names on
//! category ids 1..=90.

/// Names indexed by COCO category id; the index is the column of the `scores` output.
/// Column 0 is background; ids 12, 26, 29, 30, 45, 66, 68, 69, 71 and 83 were dropped from the
/// 2014 COCO release and never predicted for real, so they have no name.
const LABELS: [Option<&str>; 91] = [
    None, // 0: background
    Some("person"),
    Some("bicycle"),
    Some("car"),
    Some("motorcycle"),
    Some("airplane"),
    Some("bus"),
    Some("train"),
    Some("truck"),
    Some("boat"),
    Some("traffic light"), // 10
    Some("fire hydrant"),
    None, // 12: street sign
    Some("stop sign"),
    Some("parking meter"),
    Some("bench"),
    Some("bird"),
    Some("cat"),
    Some("dog"),
    Some("horse"),
    Some("sheep"), // 20
    Some("cow"),
    Some("elephant"),
    Some("bear"),
    Some("zebra"),
    Some("giraffe"),
    None, // 26: hat
    Some("backpack"),
    Some("umbrella"),
    None, // 29: shoe
    None, // 30: eye glasses
    Some("handbag"),
    Some("tie"),
    Some("suitcase"),
    Some("frisbee"),
    Some("skis"),
    Some("snowboard"),
    Some("sports ball"),
    Some("kite"),
    Some("baseball bat"),
    Some("baseball glove"), // 40
    Some("skateboard"),
    Some("surfboard"),
    Some("tennis racket"),
    Some("bottle"),
    None, // 45: plate
    Some("wine glass"),
    Some("cup"),
    Some("fork"),
    Some("knife"),
    Some("spoon"), // 50
    Some("bowl"),
    Some("banana"),
    Some("apple"),
    Some("sandwich"),
    Some("orange"),
    Some("broccoli"),
    Some("carrot"),
    Some("hot dog"),
    Some("pizza"),
    Some("donut"), // 60
    Some("cake"),
    Some("chair"),
    Some("couch"),
    Some("potted plant"),
    Some("bed"),
    None, // 66: mirror
    Some("dining table"),
    None,           // 68: window
    None,           // 69: desk
    Some("toilet"), // 70
    None,           // 71: door
    Some("tv"),
    Some("laptop"),
    Some("mouse"),
    Some("remote"),
    Some("keyboard"),
    Some("cell phone"),
    Some("microwave"),
    Some("oven"),
    Some("toaster"), // 80
    Some("sink"),
    Some("refrigerator"),
    None, // 83: blender
    Some("book"),
    Some("clock"),
    Some("vase"),
    Some("scissors"),
    Some("teddy bear"),
    Some("hair drier"),
    Some("toothbrush"), // 90
];

/// How many category ids have a name.
pub const COCO_CLASSES: usize = 80;

/// The COCO name of a category id, `None` for background (0), the ten unused ids and
/// anything above 90.
#[must_use]
pub fn coco_label(class_id: u16) -> Option<&'static str> {
    LABELS.get(usize::from(class_id)).copied().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_map_matches_tf() {
        assert_eq!(coco_label(0), None);
        assert_eq!(coco_label(1), Some("person"));
        assert_eq!(coco_label(17), Some("cat"));
        assert_eq!(coco_label(32), Some("tie"));
        assert_eq!(coco_label(47), Some("cup"));
        assert_eq!(coco_label(51), Some("bowl"));
        assert_eq!(coco_label(67), Some("dining table"));
        assert_eq!(coco_label(90), Some("toothbrush"));
        assert_eq!(coco_label(91), None);
        for unused in [12, 26, 29, 30, 45, 66, 68, 69, 71, 83] {
            assert_eq!(coco_label(unused), None, "{unused}");
        }
        let named = (0..=u16::MAX).filter_map(coco_label).count();
        assert_eq!(named, COCO_CLASSES);
    }
}
