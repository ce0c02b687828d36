// Command draw draws the benchmark's charts (SVG) from the TSV files that
// bench/run.sh's scenarios leave in one directory (-in, bench/out), into
// another (-out, bench/charts).
//
// A TSV file is one header line and rows, tab-separated. Its first column
// names a row: a number (a size: pending requests, held polls) or a label
// (a server, a store, a mode). Every other column whose values are all
// numbers is plotted; columns with the same unit, the last word of the
// column name (ms, s, us, kib, mib, b, x for a ratio, "per_s" for a rate),
// share a chart, one chart per file and unit: FILE-UNIT.svg (a column of
// another unit gets a chart of its own, FILE-COLUMN.svg), lines by the first column when it is a
// number (on a logarithmic axis when it spans more than a factor of 100),
// else bars. Known targets of the performance issue are drawn as a dashed
// line. A missing or empty directory draws nothing; a file that cannot be
// read is skipped with a message, so that one scenario's failure does not
// cost the others their charts.
//
// It is its own Go module, so that the plotting library is a dependency of
// the benchmark only, never of cibaproxy.
//
//	go run . -in ../out -out ../charts
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// targets are the performance issue's targets, by file name and unit.
var targets = map[[2]string]float64{
	{"heldpolls", "kib"}: 16,
	{"heldpolls", "ms"}:  50,
	{"flows", "per_s"}:   2000,
	{"idpload", "x"}:     10, // reduction of the IdP's requests and CPU through cibaproxy
}

// units names each unit on an axis.
var units = map[string]string{
	"ms": "milliseconds", "s": "seconds", "kib": "KiB", "mib": "MiB", "per_s": "per second",
	"us": "microseconds", "b": "bytes", "x": "ratio",
}

func main() {
	in := flag.String("in", "bench/out", "directory of the TSV files")
	out := flag.String("out", "bench/charts", "directory of the SVG charts")
	format := flag.String("format", "svg", "image format: svg, or png to look at them without an SVG viewer")
	flag.Parse()
	files, _ := filepath.Glob(filepath.Join(*in, "*.tsv"))
	if len(files) == 0 {
		fmt.Printf("draw: no TSV file in %s, no chart drawn\n", *in)
		return
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "draw:", err)
		os.Exit(1)
	}
	for _, f := range files {
		names, err := drawFile(f, *out, *format)
		if err != nil {
			fmt.Fprintf(os.Stderr, "draw: %s skipped: %v\n", f, err)
			continue
		}
		for _, n := range names {
			fmt.Printf("draw: %s\n", n)
		}
	}
}

// table is a TSV file: its header and rows.
type table struct {
	name   string
	header []string
	rows   [][]string
}

func readTable(path string) (*table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := &table{name: strings.TrimSuffix(filepath.Base(path), ".tsv")}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cells := strings.Split(line, "\t")
		if t.header == nil {
			t.header = cells
			continue
		}
		if len(cells) != len(t.header) {
			return nil, fmt.Errorf("a row of %d cells under a header of %d", len(cells), len(t.header))
		}
		t.rows = append(t.rows, cells)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.header) < 2 || len(t.rows) == 0 {
		return nil, errors.New("no header with two columns, or no row")
	}
	return t, nil
}

// numbers is column c as numbers, false when a cell is not one.
func (t *table) numbers(c int) ([]float64, bool) {
	vs := make([]float64, len(t.rows))
	for i, r := range t.rows {
		v, err := strconv.ParseFloat(r[c], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, false
		}
		vs[i] = v
	}
	return vs, true
}

// unitOf is the unit of a column name: its last word, "per_s" for a rate.
func unitOf(col string) string {
	if strings.HasSuffix(col, "_per_s") {
		return "per_s"
	}
	if i := strings.LastIndexByte(col, '_'); i >= 0 {
		return col[i+1:]
	}
	return col
}

func drawFile(path, outDir, format string) ([]string, error) {
	t, err := readTable(path)
	if err != nil {
		return nil, err
	}
	xs, numericX := t.numbers(0)
	byUnit := map[string][]int{}
	var order []string
	for c := 1; c < len(t.header); c++ {
		if _, ok := t.numbers(c); !ok {
			continue
		}
		u := unitOf(t.header[c])
		if _, known := units[u]; !known {
			u = t.header[c] // a chart of its own
		}
		if _, seen := byUnit[u]; !seen {
			order = append(order, u)
		}
		byUnit[u] = append(byUnit[u], c)
	}
	var drawn []string
	for _, u := range order {
		p := plot.New()
		p.Title.Text = t.name + ": " + strings.Join(colNames(t, byUnit[u]), ", ")
		p.X.Label.Text = t.header[0]
		p.Y.Label.Text = t.header[byUnit[u][0]]
		if long, ok := units[u]; ok {
			p.Y.Label.Text = long
		}
		p.Y.Min = 0
		p.Legend.Top = true
		var err error
		if numericX {
			err = lines(p, t, xs, byUnit[u])
		} else {
			err = bars(p, t, byUnit[u])
		}
		if err != nil {
			return drawn, err
		}
		top := 0.0
		for _, c := range byUnit[u] {
			ys, _ := t.numbers(c)
			top = max(top, slices.Max(ys))
		}
		if v, ok := targets[[2]string{t.name, u}]; ok {
			f := plotter.NewFunction(func(float64) float64 { return v })
			f.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			f.Color = color.RGBA{R: 200, A: 255}
			p.Add(f)
			p.Legend.Add(fmt.Sprintf("target %g", v), f)
			top = max(top, v)
		}
		// Room above the data for the legend.
		p.Y.Max = max(top*1.35, 1e-9)
		name := filepath.Join(outDir, t.name+"-"+u+"."+format)
		if err := p.Save(7*vg.Inch, 4*vg.Inch, name); err != nil {
			return drawn, err
		}
		drawn = append(drawn, name)
	}
	return drawn, nil
}

func colNames(t *table, cols []int) []string {
	var s []string
	for _, c := range cols {
		s = append(s, t.header[c])
	}
	return s
}

// lines draws each column against the first, one point per row (rows with
// the same x, from several rounds, are all drawn: the spread shows).
func lines(p *plot.Plot, t *table, xs []float64, cols []int) error {
	lo, hi := slices.Min(xs), slices.Max(xs)
	if lo > 0 && hi/lo > 100 {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	} else {
		p.X.Tick.Marker = plainTicks{}
	}
	for i, c := range cols {
		ys, _ := t.numbers(c)
		pts := make(plotter.XYs, len(xs))
		for k := range xs {
			pts[k] = plotter.XY{X: xs[k], Y: ys[k]}
		}
		slices.SortStableFunc(pts, func(a, b plotter.XY) int { return cmpFloat(a.X, b.X) })
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		s.Color = plotutil.Color(i)
		s.Shape = plotutil.Shape(i)
		p.Add(l, s)
		p.Legend.Add(t.header[c], l, s)
	}
	return nil
}

// bars draws each column as a group of bars, one bar per row, labelled by
// the first column.
func bars(p *plot.Plot, t *table, cols []int) error {
	labels := make([]string, len(t.rows))
	for i, r := range t.rows {
		labels[i] = r[0]
	}
	w := vg.Points(min(40, 160/float64(len(cols))))
	for i, c := range cols {
		ys, _ := t.numbers(c)
		b, err := plotter.NewBarChart(plotter.Values(ys), w)
		if err != nil {
			return err
		}
		b.Color = plotutil.Color(i)
		b.LineStyle.Width = 0
		b.Offset = w * vg.Length(float64(i)-float64(len(cols)-1)/2)
		p.Add(b)
		if len(cols) > 1 {
			p.Legend.Add(t.header[c], b)
		}
	}
	p.NominalX(labels...)
	p.X.Min, p.X.Max = -0.7, float64(len(labels))-0.3
	return nil
}

// plainTicks are gonum's default ticks labelled without trailing zeros.
type plainTicks struct{}

// Ticks returns the default ticks between lo and hi, relabelled.
func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'f', -1, 64)
		}
	}
	return ts
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
