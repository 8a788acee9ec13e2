//! Bar charts as server-rendered SVG: the geometry is computed here, the template draws
//! it with classes only (the CSP allows no inline style).

use chrono::NaiveDate;

pub const WIDTH: i64 = 640;
pub const HEIGHT: i64 = 200;
const LEFT: i64 = 36;
const BOTTOM: i64 = 24;
const TOP: i64 = 10;

pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    /// For the tooltip (`<title>`): the day and its count.
    pub label: String,
}

pub struct Tick {
    pub x: i64,
    pub text: String,
}

pub struct Chart {
    pub id: &'static str,
    pub title: &'static str,
    pub class: &'static str,
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    pub max: i64,
    pub total: i64,
    /// The y of the baseline and of the top gridline.
    pub base: i64,
    pub top: i64,
    pub left: i64,
    pub right: i64,
}

pub fn bars(
    id: &'static str,
    title: &'static str,
    class: &'static str,
    days: &[(NaiveDate, i64)],
) -> Chart {
    let max = days.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let plot_width = WIDTH - LEFT - 8;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = plot_width / (days.len() as i64).max(1);
    let width = (slot * 3 / 4).max(1);
    let base = HEIGHT - BOTTOM;
    // About six labels along the axis, whatever the range.
    let every = (days.len() / 6).max(1);
    let mut chart = Chart {
        id,
        title,
        class,
        bars: Vec::with_capacity(days.len()),
        ticks: Vec::new(),
        max,
        total: days.iter().map(|(_, n)| *n).sum(),
        base,
        top: TOP,
        left: LEFT,
        right: WIDTH - 8,
    };
    for (i, (day, count)) in days.iter().enumerate() {
        let x = LEFT + i as i64 * slot + (slot - width) / 2;
        let height = count * plot_height / max;
        chart.bars.push(Bar {
            x,
            y: base - height,
            width,
            height,
            label: format!("{day}: {count}"),
        });
        if i % every == 0 {
            chart.ticks.push(Tick {
                x: x + width / 2,
                text: day.format("%m-%d").to_string(),
            });
        }
    }
    chart
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tallest_bar_fills_the_plot_and_zero_draws_nothing() {
        let day = |d| NaiveDate::from_ymd_opt(2026, 1, d).unwrap_or_default();
        let chart = bars("c", "t", "bar", &[(day(1), 0), (day(2), 5), (day(3), 10)]);
        assert_eq!(chart.bars[0].height, 0);
        assert_eq!(chart.bars[2].y, TOP);
        assert_eq!(chart.bars[1].height * 2, chart.bars[2].height);
        assert_eq!(chart.total, 15);
    }
}
