import 'uplot/dist/uPlot.min.css';
import { Flex } from '@patternfly/react-core';
import { useEffect, useId, useRef, useState } from 'react';
import uPlot from 'uplot';
import { wsUrl } from './api.js';
import { formatValue, graphs, keepWindow, WINDOW_MS, type Graph, type StatsSample } from './stats.js';

const WIDTH = 260;
const HEIGHT = 110;
// A line per series: received and sent, or a NIC each (PatternFly's chart palette).
const COLORS = ['#0066cc', '#c9190b', '#3e8635', '#f0ab00', '#8476d1', '#009596'];

/** One graph: the canvas is decoration for sighted users; the text beside it carries the value. */
function Chart({ graph, times }: { graph: Graph; times: number[] }) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot>(null);
  // Titles hold spaces ("Network sent"): no use as an id.
  const captionId = useId();
  const data: uPlot.AlignedData = [times, ...graph.series.map((s) => s.values)];
  useEffect(() => {
    const value = (_u: uPlot, v: number | null) => formatValue(graph.unit, v);
    plot.current = new uPlot(
      {
        width: WIDTH,
        height: HEIGHT,
        legend: { show: false },
        cursor: { show: false },
        scales: {
          // Always the whole window, the latest sample at the right edge.
          x: { time: true, range: (_u, _min, max) => [max - WINDOW_MS / 1000, max] },
          y: { range: (_u, _min, max) => [0, Math.max(max, graph.unit === 'percent' ? 100 : 1024)] },
        },
        axes: [
          { values: (_u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleTimeString()) },
          { size: 80, values: (u, ticks) => ticks.map((t) => value(u, t)) },
        ],
        series: [
          {},
          ...graph.series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5 })),
        ],
      },
      data,
      host.current!,
    );
    return () => plot.current?.destroy();
    // The chart is made once per graph; new samples go through setData below.
  }, [graph.title]);
  useEffect(() => plot.current?.setData(data));
  return (
    <figure aria-labelledby={captionId} style={{ width: WIDTH }}>
      <figcaption id={captionId}>
        <strong>{graph.title}</strong>: <span>{graph.now}</span>
      </figcaption>
      <div ref={host} aria-hidden="true" />
    </figure>
  );
}

/** The graphs of a running VM, from the daemon's stats WebSocket (one sample a second). */
export default function Charts({ name, nics }: { name: string; nics: string[] }) {
  const [history, setHistory] = useState<StatsSample[]>([]);
  const [closed, setClosed] = useState<string>();
  useEffect(() => {
    const ws = new WebSocket(wsUrl(`/v1/vms/${encodeURIComponent(name)}/stats`));
    ws.onmessage = (m: MessageEvent<string>) =>
      setHistory((h) => keepWindow(h, JSON.parse(m.data) as StatsSample));
    ws.onclose = (e) => setClosed(e.reason || 'the daemon closed the statistics stream');
    return () => {
      ws.onclose = null;
      ws.close();
    };
  }, [name]);
  const { times, graphs: list } = graphs(history, nics);
  return (
    <>
      {closed && <p>No more statistics: {closed}</p>}
      <Flex spaceItems={{ default: 'spaceItemsLg' }}>
        {list.map((g) => (
          // A chart is made for its series: one that gains a series (a balloon's line) is made anew.
          <Chart key={`${g.title} ${g.series.length}`} graph={g} times={times} />
        ))}
      </Flex>
    </>
  );
}
